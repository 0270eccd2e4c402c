"""ResultsStore: one record per unit of work (see `crossval` for the key's fields).

Each record is a folder named by the hash of its full configuration, holding per-subject
predictions, the training history, timings and any artefacts (the saved model). A traced
CNN fit (`protocol="traced"`) also keeps `trace.tsv`: the held-out fold predicted after
every epoch, one row per epoch and subject. A record is
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

from .atomic import atomic_directory, write_text
from .config import config_hash
from .crossval import KEY_FIELDS, OPTIONAL_KEY_FIELDS, display_name, key_field, maps_label

# the packages whose versions can change a stored number; each record keeps them
VERSIONED_PACKAGES = ("numpy", "scipy", "pandas", "scikit-learn", "tensorflow-cpu", "keras",
                      "nilearn", "nibabel")
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

    @property
    def trace(self) -> pd.DataFrame | None:
        """The held-out fold predicted after every epoch (epoch, participant_id, y_true,
        score, pred), kept by traced fits only."""
        p = self.path / "trace.tsv"
        return pd.read_csv(p, sep="\t", dtype={"participant_id": str}) if p.exists() else None

    @property
    def name(self) -> str:
        """The model's label in tables (`crossval.display_name`)."""
        return display_name(self.key)

    @property
    def maps(self) -> list[str]:
        return list(self.key["maps"])

    @property
    def maps_label(self) -> str:
        """The maps as tables show them: `gm+fa`."""
        return maps_label(self.key)


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
    out["maps"] = [maps] if isinstance(maps, str) else list(maps)
    out.setdefault("config", {})
    return out


class ResultsStore:
    """Predictions and metrics on disk, one folder per unit, keyed by configuration hash.

    Parameters
    ----------
    root : str or Path
        The folder holding every record (`results/<profile>/` by default).
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def path_for(self, key: dict) -> Path:
        key = _normalise_key(key)
        h = config_hash(key)
        return self.root / key["chapter"] / display_name(key) / maps_label(key) / h

    def get(self, key: dict) -> Record | None:
        path = self.path_for(key)
        meta = path / "record.json"
        if not meta.exists():
            return None
        info = json.loads(meta.read_text())
        return Record(key=info["key"], path=path, info=info)

    def put(self, key: dict, predictions: pd.DataFrame, history: pd.DataFrame | None = None,
            info: dict | None = None, artifacts: Callable[[Path], None] | None = None,
            trace: pd.DataFrame | None = None) -> Record:
        """Store a finished result atomically. `artifacts(folder)` may write extra files;
        `trace` is a traced fit's per-epoch held-out predictions (`Record.trace`)."""
        key = _normalise_key(key)
        missing = [c for c in PREDICTION_COLUMNS if c not in predictions.columns]
        if missing:
            raise ValueError(f"Predictions lack columns {missing}.")
        final = self.path_for(key)
        with atomic_directory(final) as tmp:
            predictions.to_csv(tmp / "predictions.tsv", sep="\t", index=False)
            if history is not None:
                history.to_csv(tmp / "history.tsv", sep="\t", index=False)
            if trace is not None:
                trace.to_csv(tmp / "trace.tsv", sep="\t", index=False)
            if artifacts is not None:
                artifacts(tmp)
            meta = {"key": key, "hash": final.name, "created": time.time(),
                    "versions": package_versions(), **(info or {})}
            (tmp / "record.json").write_text(json.dumps(meta, indent=2, default=str))
        return Record(key=key, path=final, info=meta)

    def get_or_compute(self, key: dict, compute: Callable[[], dict]) -> Record:
        """The stored record, or `compute()` run and stored.

        `compute` returns a dict with `predictions` and optionally `history`, `info`,
        `artifacts` (a function writing files into the record folder) and `trace`.
        """
        found = self.get(key)
        if found is not None:
            return found
        out = compute()
        return self.put(key, out["predictions"], out.get("history"), out.get("info"),
                        out.get("artifacts"), out.get("trace"))

    def permutation_path(self, key: dict) -> Path:
        """Where the label-permutation test keyed by `key` lives: beside the records of the
        model `key["model"]` names (never a `record.json`, so `records` skips it)."""
        model = _normalise_key({**key["model"], "fold": None, "repeat": None})
        return (self.root / model["chapter"] / display_name(model) / maps_label(model)
                / "permutation" / f"{config_hash(key)}.json")

    def get_or_compute_permutation(self, key: dict,
                                   compute: Callable[[dict | None, Callable[[dict], None]],
                                                     dict]) -> dict:
        """The stored permutation test of `key`, or `compute(done, checkpoint)` run and
        stored.

        The finished test (a JSON-able dict) is written atomically; while it runs,
        `checkpoint(state)` keeps its partial state atomically beside it, and a later call
        hands that state back as `done`, so an interrupted test resumes where it stopped.
        """
        final = self.permutation_path(key)
        if final.exists():
            return json.loads(final.read_text())
        partial = final.with_suffix(".partial.json")
        done = json.loads(partial.read_text()) if partial.exists() else None

        def checkpoint(state: dict) -> None:
            write_text(partial, json.dumps({**state, "key": key}, default=float))

        out = {**compute(done, checkpoint), "key": key, "created": time.time(),
               "versions": package_versions()}
        write_text(final, json.dumps(out, indent=2, default=_jsonable))
        partial.unlink(missing_ok=True)
        return out

    def permutations(self) -> list[dict]:
        """Every finished permutation test in the store (partial ones left out)."""
        return [json.loads(f.read_text())
                for f in sorted(self.root.glob("**/permutation/*.json"))
                if not f.name.endswith(".partial.json") and not f.name.startswith(".")]

    def records(self, chapter: str | None = None) -> list[Record]:
        """Every stored record, or those of one chapter."""
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


def _jsonable(value):
    """NumPy arrays and scalars as JSON."""
    return value.tolist() if hasattr(value, "tolist") else str(value)


#: what `predictions_of` adds to each prediction: the key's fields, the model's label and
#: the record's hash
RECORD_COLUMNS = ("model", *KEY_FIELDS, *OPTIONAL_KEY_FIELDS, "hash")


def predictions_of(records: list[Record]) -> pd.DataFrame:
    """The records' predictions in one table.

    Parameters
    ----------
    records : list of Record

    Returns
    -------
    pandas.DataFrame
        One row per subject and record: `participant_id`, `set`, `y_true`, `score`,
        `pred`, then `model` (the label, `crossval.display_name`), every key field
        (`chapter`, `family`, `maps`, `fusion`, `protocol`, `variant`, `features`, `fold`,
        `repeat`, `seed`, `recipe`, `pretrain`) and the record's `hash`.
    """
    frames = []
    for rec in records:
        df = rec.predictions
        df["model"] = rec.name
        for f in (*KEY_FIELDS, *OPTIONAL_KEY_FIELDS):
            df[f] = rec.maps_label if f == "maps" else key_field(rec.key, f)
        df["hash"] = rec.info["hash"]
        frames.append(df)
    if not frames:
        return pd.DataFrame(columns=[*PREDICTION_COLUMNS, *RECORD_COLUMNS])
    return pd.concat(frames, ignore_index=True)


#: what `traces_of` gives per held-out subject and epoch
TRACE_COLUMNS = ("repeat", "fold", "epoch", "participant_id", "y_true", "score", "pred",
                 "val_loss", "val_accuracy", "hash")


def traces_of(records: list[Record]) -> pd.DataFrame:
    """The traces of traced fits in one table, with each epoch's validation loss and
    accuracy (on the inner validation split) from the fit's history.

    Parameters
    ----------
    records : list of Record
        Records of `protocol="traced"` fits.

    Returns
    -------
    pandas.DataFrame
        One row per record, epoch and held-out subject (`TRACE_COLUMNS`); `hash` names the
        run, so an epoch is never matched with another run's.
    """
    frames = []
    for rec in records:
        trace = rec.trace
        if trace is None:
            raise ValueError(f"Record {rec.info['hash']} ({rec.name}, protocol "
                             f"{rec.key['protocol']}) has no trace: only traced fits keep "
                             "one.")
        hist = rec.history[["epoch", "val_loss", "val_accuracy"]]
        frames.append(trace.merge(hist, on="epoch", how="left", validate="many_to_one")
                      .assign(repeat=int(rec.key["repeat"]), fold=int(rec.key["fold"]),
                              hash=rec.info["hash"]))
    if not frames:
        return pd.DataFrame(columns=list(TRACE_COLUMNS))
    return pd.concat(frames, ignore_index=True)[list(TRACE_COLUMNS)]
