"""Cohort: who is in the study, in which group and site, and where each subject's maps are.

Read from a BIDS-derivatives folder: `participants.tsv` plus one NIfTI per subject and map,
found by its BIDS entities. Everything is checked once, here, so that the rest of the
library can trust the table.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .maps import MAPS, map_info

GROUPS = ("patient", "control")


class CohortError(ValueError):
    """A cohort that cannot be used as it is; the message says which file and what to do."""


#: entities a choice can be made on, with the keyword and command-line flag that make it
CHOICES = {"ses": ("session", "--session"), "space": ("space", "--space"), "res": ("res", "--res")}


def parse_bids_name(name: str) -> tuple[dict[str, str], str, str]:
    """(entities, suffix, extension) of a BIDS file name; suffix '' when there is none.

    ``sub-01_ses-2_space-MNI_label-GM_probseg.nii.gz`` -> ({'sub': '01', 'ses': '2',
    'space': 'MNI', 'label': 'GM'}, 'probseg', '.nii.gz').
    """
    stem, dot, ext = name.partition(".")
    parts = stem.split("_")
    suffix = parts.pop() if parts and "-" not in parts[-1] else ""
    entities = {}
    for part in parts:
        key, sep, value = part.partition("-")
        if sep:
            entities.setdefault(key, value)
    return entities, suffix, dot + ext


def _reads(entities: dict[str, str], suffix: str, map_name: str) -> bool:
    for want_suffix, want in map_info(map_name).reads:
        if want_suffix and suffix.lower() != want_suffix.lower():
            continue
        if all(entities.get(k, "").lower() == v.lower() for k, v in want):
            return True
    return False


def _spelling(map_name: str) -> str:
    """The entity spellings a map is read under, for error messages."""
    return " or ".join("_".join([f"{k}-{v}" for k, v in want] + ([suffix] if suffix else []))
                       for suffix, want in map_info(map_name).reads)


def find_maps(subject_dir: Path, map_name: str, subject: str,
              choose: dict[str, str] | None = None) -> list[tuple[Path, dict[str, str]]]:
    """NIfTI files of `subject` under `subject_dir` that hold `map_name`, with their entities,
    narrowed to the chosen entity values (``{'ses': '2', 'space': ...}``)."""
    sub = subject.removeprefix("sub-")
    found = []
    for p in sorted(subject_dir.rglob("*.nii*")):
        entities, suffix, ext = parse_bids_name(p.name)
        if not p.is_file() or ext not in (".nii", ".nii.gz") or entities.get("sub") != sub:
            continue
        if not _reads(entities, suffix, map_name):
            continue
        if all(entities.get(k) == v for k, v in (choose or {}).items()):
            found.append((p, entities))
    return found


def ambiguity_message(subject: str, map_name: str, found: list[tuple[Path, dict[str, str]]]) -> str:
    """Which entities tell the candidate files apart, and how to choose among them."""
    keys = sorted({k for _, e in found for k in e} - {"sub"})
    differ = [k for k in keys if len({e.get(k) for _, e in found}) > 1]
    how = [f"{CHOICES[k][0]}= (command line {CHOICES[k][1]}) one of "
           f"{sorted({e.get(k) or '(none)' for _, e in found})}" for k in differ if k in CHOICES]
    files = ", ".join(str(f) for f, _ in found)
    if how:
        return (f"Subject {subject}: {len(found)} {map_name} files differ in "
                f"{', '.join(differ)} ({files}); choose with {'; '.join(how)}.")
    return (f"Subject {subject}: several {map_name} files match ({files}); they differ in "
            f"{differ or 'nothing but their folder'}, which is not a choice the loader makes: "
            "keep one per subject.")


def read_description(root: Path) -> dict:
    """`dataset_description.json` of a BIDS folder, or an empty dict when there is none."""
    path = root / "dataset_description.json"
    if not path.exists():
        return {}
    try:
        desc = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise CohortError(f"{path} is not valid JSON ({err}); fix or remove it.") from err
    if not isinstance(desc, dict):
        raise CohortError(f"{path} must hold a JSON object with at least a Name.")
    return desc


@dataclass
class Cohort:
    """Participants table (index: participant_id) with one path column per map."""

    participants: pd.DataFrame
    root: Path
    maps: tuple[str, ...]
    #: contents of dataset_description.json (empty when the folder has none)
    description: dict = field(default_factory=dict)
    #: the entity values chosen among several scans per subject (``ses``, ``space``, ``res``)
    selection: dict = field(default_factory=dict)

    @classmethod
    def from_bids(cls, root: str | Path, maps: tuple[str, ...] | list[str] = MAPS,
                  session: str | None = None, space: str | None = None,
                  res: str | None = None) -> Cohort:
        """Load and validate a BIDS-derivatives folder.

        Parameters
        ----------
        root : path
            Folder with participants.tsv, dataset_description.json and one folder per subject.
        maps : sequence of str
            Map names (see :mod:`mri3dcnn.maps`).
        session, space, res : str, optional
            Entity values (without the ``ses-``/``space-``/``res-`` key) that pick one file
            where a subject has several visits, spaces or resolutions of a map; without
            them such a subject is an error that lists the files and the choices.

        Returns
        -------
        Cohort
        """
        root = Path(root)
        choose = {k: v for k, v in (("ses", session), ("space", space), ("res", res)) if v}
        choose = {k: str(v).split("-", 1)[1] if str(v).startswith(f"{k}-") else str(v)
                  for k, v in choose.items()}
        maps = tuple(maps)
        unknown = [m for m in maps if m not in MAPS]
        if unknown:
            raise CohortError(f"Unknown map(s) {unknown}; valid maps are {MAPS}.")
        tsv = root / "participants.tsv"
        if not tsv.exists():
            raise CohortError(
                f"{tsv} not found. A cohort folder needs participants.tsv with columns "
                "participant_id and group (patient/control); generate one with "
                "`mri3dcnn synth --out DIR` or point to your BIDS-derivatives folder."
            )
        table = pd.read_csv(tsv, sep="\t", dtype={"participant_id": str})
        for col in ("participant_id", "group"):
            if col not in table.columns:
                raise CohortError(f"{tsv}: column {col!r} is missing; add it.")
        dup = table["participant_id"][table["participant_id"].duplicated()].unique()
        if len(dup):
            raise CohortError(
                f"{tsv}: participant_id {list(dup)} appear more than once; each subject "
                "must have exactly one row."
            )
        table["group"] = table["group"].astype(str).str.strip().str.lower()
        bad = table.loc[~table["group"].isin(GROUPS), ["participant_id", "group"]]
        if len(bad):
            first = bad.iloc[0]
            raise CohortError(
                f"{tsv}: subject {first.participant_id} has group {first.group!r}; "
                f"groups must be one of {GROUPS} ({len(bad)} row(s) affected). "
                "Rename the labels or drop those rows."
            )
        if "site" not in table.columns:
            table["site"] = "site1"
        table["site"] = table["site"].astype(str)
        table = table.set_index("participant_id", drop=False)
        for m in maps:
            paths = []
            for sub in table.index:
                sub_dir = root / sub
                found = find_maps(sub_dir, m, sub, choose) if sub_dir.is_dir() else []
                if not found:
                    others = find_maps(sub_dir, m, sub) if choose and sub_dir.is_dir() else []
                    chosen = ", ".join(f"{k}-{v}" for k, v in choose.items())
                    raise CohortError(
                        f"Subject {sub}: no {m} map under {sub_dir}"
                        + (f" with {chosen} (it has {[str(f) for f, _ in others]})"
                           if others else f" (looked for {sub}_*_<{_spelling(m)}>.nii[.gz])")
                        + ". Add the file or remove the subject from participants.tsv."
                    )
                if len(found) > 1:
                    raise CohortError(ambiguity_message(sub, m, found))
                paths.append(str(found[0][0]))
            table[m] = paths
        for g in GROUPS:
            if (table["group"] == g).sum() < 2:
                raise CohortError(f"{tsv}: fewer than 2 subjects in group {g!r}.")
        return cls(participants=table, root=root, maps=maps,
                   description=read_description(root), selection=choose)

    @property
    def name(self) -> str:
        """The dataset's Name from dataset_description.json, else the folder name."""
        return str(self.description.get("Name") or self.root.name)

    def __len__(self) -> int:
        return len(self.participants)

    @property
    def subjects(self) -> list[str]:
        return list(self.participants.index)

    @property
    def labels(self) -> np.ndarray:
        """1 for patients, 0 for controls, in table order."""
        return (self.participants["group"] == "patient").to_numpy().astype(np.int64)

    def paths(self, map_name: str) -> list[str]:
        if map_name not in self.maps:
            raise CohortError(f"Map {map_name!r} was not loaded; this cohort has {self.maps}.")
        return list(self.participants[map_name])

    def summary(self) -> pd.DataFrame:
        """Subjects per site and group, with mean age: the cohort's first table."""
        p = self.participants
        agg = {"participant_id": "count"}
        if "age" in p.columns:
            agg["age"] = "mean"
        out = p.groupby(["site", "group"]).agg(agg).rename(
            columns={"participant_id": "n", "age": "mean_age"}
        )
        out = out.round(1)
        out.attrs["name"] = self.name
        return out
