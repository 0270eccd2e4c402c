"""ResultsStore: one record per (chapter, model, maps, fold, repeat, seed, protocol).

Each record is a folder named by the hash of its full configuration, holding per-subject
predictions, the training history, timings and any artefacts (the saved model). A record is
built in a temporary folder and renamed into place, so a killed run leaves no half record
and the next run resumes at the first missing one. Rendering the book again with the same
parameters reads records and trains nothing.
"""

from __future__ import annotations

import importlib.metadata
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .atomic import atomic_directory
from .config import config_hash

# the packages whose versions can change a stored number; each record keeps them
VERSIONED_PACKAGES = ("numpy", "scipy", "pandas", "scikit-learn", "tensorflow-cpu", "keras",
                      "nilearn", "nibabel")
KEY_FIELDS = ("chapter", "model", "maps", "fold", "repeat", "seed", "protocol")
PREDICTION_COLUMNS = ("participant_id", "set", "y_true", "score", "pred")


@dataclass
class Record:
    """One stored result."""

    key: dict
    path: Path
    info: dict

    @property
    def predictions(self) -> pd.DataFrame:
        return pd.read_csv(self.path / "predictions.tsv", sep="\t",
                           dtype={"participant_id": str})

    @property
    def history(self) -> pd.DataFrame | None:
        p = self.path / "history.tsv"
        return pd.read_csv(p, sep="\t") if p.exists() else None

    def artifact(self, name: str) -> Path:
        return self.path / name


def package_versions(names: tuple[str, ...] = VERSIONED_PACKAGES) -> dict[str, str]:
    """Installed versions of `names` (absent ones are left out)."""
    out = {}
    for name in names:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return out


def _normalise_key(key: dict) -> dict:
    missing = [f for f in KEY_FIELDS if f not in key]
    if missing:
        raise ValueError(f"Result key lacks {missing}; a key needs {KEY_FIELDS} and 'config'.")
    out = dict(key)
    maps = out["maps"]
    out["maps"] = "+".join(maps) if isinstance(maps, list | tuple) else str(maps)
    out.setdefault("config", {})
    return out


class ResultsStore:
    """Predictions and metrics on disk, keyed by configuration hash."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def path_for(self, key: dict) -> Path:
        key = _normalise_key(key)
        h = config_hash(key)
        return self.root / key["chapter"] / key["model"] / key["maps"] / h

    def get(self, key: dict) -> Record | None:
        path = self.path_for(key)
        meta = path / "record.json"
        if not meta.exists():
            return None
        info = json.loads(meta.read_text())
        return Record(key=info["key"], path=path, info=info)

    def put(self, key: dict, predictions: pd.DataFrame, history: pd.DataFrame | None = None,
            info: dict | None = None, artifacts: Callable[[Path], None] | None = None) -> Record:
        """Store a finished result atomically. `artifacts(folder)` may write extra files."""
        key = _normalise_key(key)
        missing = [c for c in PREDICTION_COLUMNS if c not in predictions.columns]
        if missing:
            raise ValueError(f"Predictions lack columns {missing}.")
        final = self.path_for(key)
        with atomic_directory(final) as tmp:
            predictions.to_csv(tmp / "predictions.tsv", sep="\t", index=False)
            if history is not None:
                history.to_csv(tmp / "history.tsv", sep="\t", index=False)
            if artifacts is not None:
                artifacts(tmp)
            meta = {"key": key, "hash": final.name, "created": time.time(),
                    "versions": package_versions(), **(info or {})}
            (tmp / "record.json").write_text(json.dumps(meta, indent=2, default=str))
        return Record(key=key, path=final, info=meta)

    def get_or_compute(self, key: dict, compute: Callable[[], dict]) -> Record:
        """The stored record, or `compute()` run and stored.

        `compute` returns a dict with `predictions` and optionally `history`, `info` and
        `artifacts` (a function writing files into the record folder).
        """
        found = self.get(key)
        if found is not None:
            return found
        out = compute()
        return self.put(key, out["predictions"], out.get("history"), out.get("info"),
                        out.get("artifacts"))

    def records(self, chapter: str | None = None) -> list[Record]:
        base = self.root / chapter if chapter else self.root
        out = []
        for meta in sorted(base.glob("**/record.json")):
            if any(part.startswith(".") for part in meta.relative_to(self.root).parts):
                continue
            info = json.loads(meta.read_text())
            out.append(Record(key=info["key"], path=meta.parent, info=info))
        return out

    def predictions(self, chapter: str | None = None) -> pd.DataFrame:
        """Every stored prediction, one row per subject and record, with the key columns."""
        return predictions_of(self.records(chapter))


def predictions_of(records: list[Record]) -> pd.DataFrame:
    """The records' predictions in one table, with each record's key columns and hash."""
    frames = []
    for rec in records:
        df = rec.predictions
        for f in KEY_FIELDS:
            df[f] = rec.key[f]
        df["hash"] = rec.info["hash"]
        frames.append(df)
    if not frames:
        return pd.DataFrame(columns=[*PREDICTION_COLUMNS, *KEY_FIELDS, "hash"])
    return pd.concat(frames, ignore_index=True)
