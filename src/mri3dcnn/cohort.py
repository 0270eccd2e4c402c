"""Cohort: who is in the study, in which group and site, and where each subject's maps are.

Read from a BIDS-derivatives folder: `participants.tsv` plus one NIfTI per subject and map,
found by its BIDS entities. Everything is checked once, here, so that the rest of the
library can trust the table.
"""

from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path

import numpy as np
import pandas as pd

from .maps import MAPS, map_info

GROUPS = ("patient", "control")


class CohortError(ValueError):
    """A cohort that cannot be used as it is; the message says which file and what to do."""


def _find_map(subject_dir: Path, map_name: str) -> list[Path]:
    patterns = [p.lower() for p in map_info(map_name).patterns]
    return sorted(
        p for p in subject_dir.rglob("*")
        if p.is_file() and any(fnmatch(p.name.lower(), pat) for pat in patterns)
    )


@dataclass
class Cohort:
    """Participants table (index: participant_id) with one path column per map."""

    participants: pd.DataFrame
    root: Path
    maps: tuple[str, ...]

    @classmethod
    def from_bids(cls, root: str | Path, maps: tuple[str, ...] | list[str] = MAPS) -> Cohort:
        """Load and validate a BIDS-derivatives folder."""
        root = Path(root)
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
                found = _find_map(sub_dir, m) if sub_dir.is_dir() else []
                if not found:
                    raise CohortError(
                        f"Subject {sub}: no {m} map under {sub_dir} (looked for "
                        f"{' or '.join(map_info(m).patterns)}). Add the file or remove the subject "
                        "from participants.tsv."
                    )
                if len(found) > 1:
                    raise CohortError(
                        f"Subject {sub}: several {m} maps match ({[str(f) for f in found]}); "
                        "keep one per subject."
                    )
                paths.append(str(found[0]))
            table[m] = paths
        for g in GROUPS:
            if (table["group"] == g).sum() < 2:
                raise CohortError(f"{tsv}: fewer than 2 subjects in group {g!r}.")
        return cls(participants=table, root=root, maps=maps)

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
        return out.round(1)
