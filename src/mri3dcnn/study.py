"""Study: what every chapter shares (profile, cohort, split plan, arrays, results store).

A chapter starts with `Study.open(profile, cohort_dir, results_dir)`. With no cohort folder
it uses the profile's synthetic cohort, generating it on first use, so a chapter run on its
own with papermill works as well as a whole-book build.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .cohort import Cohort
from .config import Profile, default_paths, get_profile
from .maps import MAPS
from .results import Record, ResultsStore, predictions_of
from .splits import make_split_plan, save_split_plan
from .synthetic import generate_cohort, read_truth
from .volumes import brain_mask, file_hash, load_maps


def ensure_synthetic_cohort(profile: str | Profile, out: str | Path | None = None,
                            progress: bool = True) -> Path:
    """The profile's default synthetic cohort, generated once."""
    p = get_profile(profile)
    out = Path(out) if out else default_paths(p)["cohort"]
    if not (out / "participants.tsv").exists() or read_truth(out) is None:
        generate_cohort(out, n_subjects=p.n_subjects, seed=p.cohort_seed, grid_mm=p.grid_mm,
                        n_sites=p.n_sites, progress=progress)
    return out


def cohort_fingerprint(cohort: Cohort) -> str:
    """Hash of the participants table and every map file's content."""
    h = hashlib.sha256((cohort.root / "participants.tsv").read_bytes())
    for m in cohort.maps:
        for path in cohort.paths(m):
            h.update(file_hash(path).encode())
    return h.hexdigest()[:16]


@dataclass
class Study:
    """The shared state of one run of the book."""

    profile: Profile
    cohort: Cohort
    plan: pd.DataFrame
    store: ResultsStore
    cache_dir: Path
    truth: dict | None
    fingerprint: str
    _arrays: dict = field(default_factory=dict, repr=False)

    @classmethod
    def open(cls, profile: str | Profile = "quick", cohort_dir: str | Path | None = None,
             results_dir: str | Path | None = None, maps: tuple[str, ...] = MAPS,
             progress: bool = False) -> Study:
        p = get_profile(profile)
        paths = default_paths(p)
        if cohort_dir is None:
            cohort_dir = ensure_synthetic_cohort(p, paths["cohort"], progress=progress)
        cohort = Cohort.from_bids(cohort_dir, maps)
        results = Path(results_dir) if results_dir else paths["results"]
        plan = make_split_plan(cohort.participants, p.n_folds, p.n_repeats, seed=p.cohort_seed)
        save_split_plan(plan, results / "split_plan.tsv")
        return cls(profile=p, cohort=cohort, plan=plan, store=ResultsStore(results),
                   cache_dir=paths["cache"], truth=read_truth(cohort_dir),
                   fingerprint=cohort_fingerprint(cohort))

    @property
    def grid_mm(self) -> float:
        return self.profile.grid_mm

    @property
    def mask(self) -> np.ndarray:
        return brain_mask(self.grid_mm)

    @property
    def y(self) -> np.ndarray:
        return self.cohort.labels

    @property
    def ids(self) -> list[str]:
        return self.cohort.subjects

    @property
    def oracle_accuracy(self) -> float | None:
        return None if self.truth is None else float(self.truth["oracle_accuracy"])

    @property
    def context(self) -> dict:
        """What every result key carries besides the model: cohort, grid and profile."""
        p = self.profile.as_dict()
        return {"cohort": self.fingerprint, "grid_mm": self.grid_mm,
                "profile": {k: p[k] for k in ("name", "n_folds", "n_repeats", "cohort_seed")}}

    def fit_cnn(self, model: str, maps: list[str] | tuple[str, ...], fusion: str = "branch",
                protocol: str = "inner", chapter: str = "3d_cnn",
                folds: list[int] | None = None, **overrides) -> list:
        """Cross-validate one CNN configuration with the profile's training budget.

        All CNN chapters store under one chapter name, so a model trained for one chapter
        is reused, not retrained, by the next.
        """
        from .training import FitSpec, run_cv

        p = self.profile
        spec = FitSpec(**{"model": model, "maps": tuple(maps), "epochs": p.epochs,
                          "batch_size": p.batch_size, "patience": p.patience,
                          "seed": p.seeds[0], "protocol": protocol, "fusion": fusion,
                          "augment": p.augment, **overrides})
        return run_cv(self.store, chapter, spec, self.arrays(spec.maps), self.ids, self.y,
                      self.plan, self.context, self.grid_mm, folds=folds)

    def training_description(self, models, map_sets) -> str:
        """One paragraph stating what a CNN chapter trains, computed from the profile."""
        from .models import build

        p = self.profile
        grid = self.mask.shape
        counts = ", ".join(f"{m} {build(m, ['gm'], grid, compile=False).count_params():,}"
                           for m in models)
        return (f"Models {', '.join(models)} on map sets "
                f"{', '.join('+'.join(m) for m in map_sets)}; grid "
                f"{'x'.join(map(str, grid))} ({self.grid_mm:g} mm); parameters on one map: "
                f"{counts}. Up to {p.epochs} epochs, batch {p.batch_size}, early stopping after "
                f"{p.patience} epochs without a lower validation loss; augmentation "
                f"{'on' if p.augment else 'off'}; {p.n_folds}-fold CV x {p.n_repeats} "
                "repeat(s).")

    def cnn_chapter(self, models: list[str] | tuple[str, ...],
                    map_sets: list | tuple | None = None) -> dict:
        """Cross-validate each model on each map set; return what a family chapter shows:
        the records, learning curves, per-fold metrics and pooled summary."""
        from .stats import per_fold_metrics, summarise

        map_sets = [tuple(m) for m in (map_sets or self.profile.cnn_map_sets)]
        records = [r for model in models for maps in map_sets
                   for r in self.fit_cnn(model, maps)]
        preds = predictions_of(records)
        histories = pd.concat([r.history.assign(model=r.key["model"], maps=r.key["maps"],
                                                fold=r.key["fold"], repeat=r.key["repeat"])
                               for r in records], ignore_index=True)
        fits = pd.DataFrame([{"model": r.key["model"], "maps": r.key["maps"],
                              "repeat": r.key["repeat"], "fold": r.key["fold"],
                              "best epoch": r.info["best_epoch"],
                              "epochs run": r.info["epochs_run"],
                              "train s": round(r.info["timings"]["fit_s"], 1),
                              "samples/s": round(r.info["timings"]["samples_per_s"], 1)}
                             for r in records])
        return {"records": records, "histories": histories, "fits": fits,
                "per_fold": per_fold_metrics(preds), "summary": summarise(preds)}

    def records(self, chapter: str | None = None) -> list[Record]:
        """Stored records made on this cohort; results of another cohort are never mixed in."""
        return [r for r in self.store.records(chapter)
                if r.key.get("config", {}).get("cohort") == self.fingerprint]

    def predictions(self, chapter: str | None = None) -> pd.DataFrame:
        """Stored predictions made on this cohort, with key columns (see `predictions_of`)."""
        return predictions_of(self.records(chapter))

    def arrays(self, maps: list[str] | tuple[str, ...]) -> dict[str, np.ndarray]:
        """Maps on the study grid (cached on disk and in memory)."""
        missing = [m for m in maps if m not in self._arrays]
        if missing:
            self._arrays.update(load_maps(self.cohort, missing, self.grid_mm, self.cache_dir,
                                          progress=False))
        return {m: self._arrays[m] for m in maps}
