"""What the library writes per subject, as a BIDS-derivatives dataset.

Saliency maps (chapter 8, `mri3dcnn predict --saliency`) and predictions (`mri3dcnn
predict`) land in folders a BIDS tool can read: a `dataset_description.json` saying the
folder is a derivative, what made it (mri3dcnn and its version) and from which datasets;
files named by their entities, in each subject's folder (group-level files at the root,
without ``sub-``); and beside every file a JSON sidecar saying what its values mean, so a
map found on disk explains itself. `check_dataset` checks all of that.
"""

from __future__ import annotations

import importlib.metadata
import json
import re
from collections.abc import Sequence
from pathlib import Path

import nibabel as nib
import pandas as pd

from .atomic import write_text
from .cohort import parse_bids_name

BIDS_VERSION = "1.9.0"
#: the files a derivatives dataset may hold without a sidecar of their own
NO_SIDECAR = ("dataset_description.json", "README", "README.md", "CHANGES", "LICENSE",
              ".bidsignore")
#: what ``sub-``, ``ses-``, ``desc-`` and every other entity's value may hold
_LABEL = re.compile(r"^[A-Za-z0-9]+$")


def version() -> str:
    """The installed mri3dcnn version, as GeneratedBy records it."""
    try:
        return importlib.metadata.version("mri3dcnn")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def label(*words: str) -> str:
    """An entity value from free text: letters and digits only, each later word starting
    with a capital (``label("integrated_gradients", "GM")`` -> ``integratedGradientsGM``)."""
    parts = [p for w in words for p in re.split(r"[^A-Za-z0-9]+", w) if p]
    return "".join(p if i == 0 else p[0].upper() + p[1:] for i, p in enumerate(parts))


def describe(root: str | Path, name: str, generated_by: str, sources: Sequence[str | Path],
             **extra) -> Path:
    """Write `dataset_description.json`: a derivative, made by mri3dcnn (this version) from
    `sources` (folders, recorded as file URLs)."""
    root = Path(root)
    desc = {"Name": name, "BIDSVersion": BIDS_VERSION, "DatasetType": "derivative",
            "GeneratedBy": [{"Name": "mri3dcnn", "Version": version(),
                             "Description": generated_by}],
            "SourceDatasets": [{"URL": Path(s).resolve().as_uri()} for s in sources],
            **extra}
    write_text(root / "dataset_description.json", json.dumps(desc, indent=2))
    return root / "dataset_description.json"


def sidecar_of(path: str | Path) -> Path:
    """The JSON sidecar beside a data file (``x.nii.gz`` -> ``x.json``)."""
    path = Path(path)
    return path.with_name(path.name.split(".")[0] + ".json")


def write_image(root: str | Path, rel: str, img: nib.Nifti1Image, sidecar: dict) -> Path:
    """One NIfTI file of the dataset and its sidecar (callers build the dataset in a
    temporary folder, `atomic.atomic_directory`)."""
    path = Path(root) / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(img, path)
    write_text(sidecar_of(path), json.dumps(sidecar, indent=2))
    return path


def write_table(path: str | Path, table: pd.DataFrame, columns: dict[str, dict]) -> Path:
    """A TSV (``n/a`` for missing values) and its sidecar, one description per column; a
    column without one is an error, so no table goes out unexplained."""
    path = Path(path)
    missing = [c for c in table.columns if c not in columns]
    if missing:
        raise ValueError(f"{path.name}: columns {missing} have no description.")
    write_text(path, table.to_csv(sep="\t", index=False, na_rep="n/a", float_format="%.9g"))
    write_text(sidecar_of(path), json.dumps({c: columns[c] for c in table.columns}, indent=2))
    return path


def _check_description(root: Path) -> list[str]:
    path = root / "dataset_description.json"
    if not path.is_file():
        return [f"{path} is missing"]
    try:
        desc = json.loads(path.read_text())
    except ValueError as err:
        return [f"{path} is not valid JSON ({err})"]
    problems = []
    if desc.get("DatasetType") != "derivative":
        problems.append(f"{path}: DatasetType is {desc.get('DatasetType')!r}, not 'derivative'")
    for key in ("Name", "BIDSVersion"):
        if not desc.get(key):
            problems.append(f"{path}: {key} is missing")
    made = desc.get("GeneratedBy")
    if not (isinstance(made, list) and made and all(isinstance(g, dict) and g.get("Name")
                                                     for g in made)):
        problems.append(f"{path}: GeneratedBy must be a list of objects with a Name")
    if not desc.get("SourceDatasets"):
        problems.append(f"{path}: SourceDatasets is missing")
    return problems


def _check_file(root: Path, path: Path) -> list[str]:
    rel = path.relative_to(root)
    entities, suffix, ext = parse_bids_name(path.name)
    problems = []
    if not suffix:
        problems.append(f"{rel}: no suffix after the entities")
    bad = [f"{k}-{v}" for k, v in entities.items() if not _LABEL.match(v)]
    if bad:
        problems.append(f"{rel}: entity values must be letters and digits: {bad}")
    folders = {p.split("-", 1)[0]: p.split("-", 1)[1] for p in rel.parts[:-1] if "-" in p}
    for key in ("sub", "ses"):
        if folders.get(key) != entities.get(key):
            problems.append(f"{rel}: {key}-{entities.get(key)} in the name, "
                            f"{key}-{folders.get(key)} in the folders")
    side = sidecar_of(path)
    if not side.is_file():
        return [*problems, f"{rel}: its sidecar {side.name} is missing"]
    try:
        meta = json.loads(side.read_text())
    except ValueError as err:
        return [*problems, f"{side.relative_to(root)} is not valid JSON ({err})"]
    if not isinstance(meta, dict) or not meta:
        problems.append(f"{side.relative_to(root)} must hold a non-empty JSON object")
    elif ext == ".tsv":
        head = pd.read_csv(path, sep="\t", nrows=0).columns
        undescribed = [c for c in head if c not in meta]
        if undescribed:
            problems.append(f"{side.relative_to(root)}: columns {undescribed} not described")
    return problems


def check_dataset(root: str | Path) -> list[str]:
    """What keeps `root` from being a BIDS-derivatives dataset as this library writes them:
    the description, entity names that parse back and agree with their folders, and a valid
    sidecar beside every NIfTI and TSV file (columns described). Empty when all is well."""
    root = Path(root)
    problems = _check_description(root)
    for path in sorted(root.rglob("*")):
        if not path.is_file() or path.name in NO_SIDECAR:
            continue
        if path.name.endswith((".nii", ".nii.gz", ".tsv")):
            problems.extend(_check_file(root, path))
    return problems
