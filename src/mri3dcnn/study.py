"""Study: what every chapter shares (profile, cohort, split plan, arrays, results store).

A chapter starts with `Study.open(profile, cohort_dir, results_dir)`. With no cohort folder
it uses the profile's synthetic cohort, generating it on first use, so a chapter run on its
own with papermill works as well as a whole-book build.

Every model kind is built the same way (`cnn`, `sklearn`, `late_fusion` return a
`crossval.Model`) and run by the same verb, `cross_validate`. Each `*_chapter` method is
the one call behind a chapter's tables and figures.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd

from .claims import ranking as claims_ranking
from .cohort import Cohort
from .config import Profile, default_paths, get_profile
from .crossval import (
    CHAPTER_2D,
    CHAPTER_CNN,
    CHAPTER_SVM,
    LateFusion,
    Model,
    ModelSpec,
    cross_validate,
    display_name,
    unit_keys,
)
from .features import GLOBAL_FEATURES
from .maps import MAPS
from .results import Record, ResultsStore, predictions_of
from .splits import make_split_plan, save_split_plan
from .stats import MODEL_KEYS, NOT_PERMUTED
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
        """Open the study a chapter works on.

        Parameters
        ----------
        profile : str or Profile
            `tiny`, `quick` or `full`: cohort size, grid, CV plan and training budget.
        cohort_dir : str or Path, optional
            A BIDS-derivatives cohort; default: the profile's synthetic cohort, generated
            on first use.
        results_dir : str or Path, optional
            The results store; default `results/<profile>/` in the project.
        maps : tuple of str
            The maps to read (names from `maps.MAPS`).
        progress : bool
            Progress bars while generating the synthetic cohort.

        Returns
        -------
        Study
            Profile, cohort, split plan (also written to the store), results store,
            cohort fingerprint and, on a synthetic cohort, its ground truth.
        """
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

    # --- one verb for every model kind ---------------------------------------------------

    def cross_validate(self, model: Model, folds: list[int] | None = None) -> list[Record]:
        """Run (or read back) every unit of a model over the study's split plan.

        Parameters
        ----------
        model : crossval.Model
            Key fields and estimator, from `cnn`, `sklearn` or `late_fusion`.
        folds : list of int, optional
            Only these folds (default: all).

        Returns
        -------
        list of Record
            One per (repeat, fold), in plan order.
        """
        return cross_validate(self.store, model.spec, model.estimator, self.plan,
                              self.context, folds=folds)

    def unit_keys(self, model: Model) -> list[dict]:
        """The result keys `cross_validate(model)` would run, without running any."""
        return unit_keys(model.spec, model.estimator, self.plan, self.context)

    # --- "better than chance" for a whole scikit-learn pipeline ------------------------------

    def permutation_key(self, model: Model) -> dict:
        """The key of a model's label-permutation test: its key fields, cohort, grid and
        profile, the hashes of its units (estimator, every fold's training subjects), the number of
        permutations, the seed, the strata and the statistic."""
        from .stats import CHANCE_METRIC

        p = self.profile
        return {"model": model.spec.fields(), "context": self.context,
                "units": [self.store.path_for(k).name for k in self.unit_keys(model)],
                "n_permutations": self.n_permutations(model), "seed": p.seed,
                "strata": "site and first-repeat fold",
                "metric": CHANCE_METRIC}

    def permutation_strata(self) -> np.ndarray:
        """Per subject, its site and its fold in the first repeat: labels are exchanged
        only inside these cells, so every permuted run keeps the real run's patients and
        controls per site and per fold (the folds were stratified on the real labels; a
        permutation across folds could leave a small training fold with one class)."""
        first = self.plan[self.plan["repeat"] == self.plan["repeat"].min()]
        fold = first.set_index("participant_id").loc[self.ids, "fold"].astype(str)
        site = self.cohort.participants.loc[self.ids, "site"].astype(str)
        return (site.to_numpy() + "/" + fold.to_numpy()).astype(object)

    def n_permutations(self, model: Model) -> int:
        """How many permutations the profile affords a model: `n_permutations` for a
        scikit-learn pipeline, `n_permutations_cnn` for a CNN (each one a full
        cross-validation of the network)."""
        from .training import CNNFit

        p = self.profile
        return p.n_permutations_cnn if isinstance(model.estimator, CNNFit) else p.n_permutations

    def permutation_test(self, model: Model) -> dict:
        """Label-permutation test of a model's whole pipeline (Ojala and Garriga 2010): its
        mean held-out balanced accuracy over every fold of every repeat of the split plan,
        against `n_permutations(model)` refits with labels permuted within site and fold
        (`permutation_strata`): a scikit-learn pipeline refitted whole, or a CNN trained
        again on every fold as the chapter trains it. Stored beside the model's records;
        read back, never recomputed, and an interrupted test resumes
        (`ResultsStore.get_or_compute_permutation`).

        Returns
        -------
        dict
            `score`, `p_value`, `n_permutations`, `seed`, `null` (the permuted scores),
            `test` and `key`.
        """
        from dataclasses import replace

        from .crossval import iter_units
        from .stats import (
            CHANCE_METRIC,
            metrics,
            permutation_test,
            plan_folds,
            sklearn_permutation_test,
        )
        from .svm import SklearnFit
        from .training import CNNFit

        est, p = model.estimator, self.profile
        n = self.n_permutations(model)
        if not isinstance(est, SklearnFit | CNNFit):
            raise TypeError(f"{model.spec.family}: a permutation test refits the whole "
                            "pipeline; it needs a scikit-learn model or a CNN.")
        if n < 1:
            raise ValueError(f"{model.spec.family}: the profile asks for no permutations of "
                             "this kind of model.")
        strata, name = self.permutation_strata(), "site and first-repeat fold"

        def cnn_score(labels: np.ndarray) -> float:
            fit = replace(est, y=np.asarray(labels))
            scores = []
            for unit in iter_units(model.spec, est, self.plan, self.context):
                pred = fit.fit_predict(unit)["predictions"]
                cv = pred[pred["set"] == "cv"]
                scores.append(metrics(cv["y_true"], cv["score"], cv["pred"])[CHANCE_METRIC])
            return float(np.mean(scores))

        def compute(done: dict | None, checkpoint: Callable[[dict], None]) -> dict:
            if isinstance(est, CNNFit):
                out = permutation_test(cnn_score, est.y, n, seed=p.seed, strata=strata,
                                       done=done, checkpoint=checkpoint, strata_name=name)
            else:
                out = sklearn_permutation_test(est.make, est.X, est.y,
                                               plan_folds(self.plan, self.ids), n,
                                               seed=p.seed, strata=strata, done=done,
                                               checkpoint=checkpoint, strata_name=name)
            return {**out, "null": out["null"].tolist()}

        return self.store.get_or_compute_permutation(self.permutation_key(model), compute)

    def stored_permutation_tests(self, records: set[str] | None = None) -> pd.DataFrame:
        """Every stored permutation test on this cohort, grid and profile with this
        profile's count and seed, as `permutation_tests` lists them (for the summary);
        with `records` (record hashes), only tests of models whose every unit is among
        them, so a test of an older version of a model is never shown beside the new."""
        p = self.profile
        rows = []
        for res in self.store.permutations():
            key = res["key"]
            if (key.get("context") != self.context
                    or key["n_permutations"] not in (p.n_permutations, p.n_permutations_cnn)
                    or key["seed"] != p.seed
                    or (records is not None and not set(key["units"]) <= records)):
                continue
            fields = key["model"]
            rows.append({"chapter": fields["chapter"], "model": display_name(fields),
                         "maps": "+".join(fields["maps"]), "protocol": fields["protocol"],
                         "variant": fields["variant"], "p_value": res["p_value"],
                         "test": res["test"]})
        return pd.DataFrame(rows, columns=[*MODEL_KEYS, "p_value", "test"])

    def permutation_description(self) -> str:
        """One sentence stating the permutation test a chapter's `p_permutation` is."""
        p = self.profile
        if p.n_permutations < 1:
            return "No label-permutation test in this profile."
        return (f"`p_permutation`: the whole pipeline (scaling, screening, the inner choice "
                f"of C, the fit) rerun on the same {p.n_folds}-fold x {p.n_repeats} "
                f"repeat(s) plan with labels permuted within site and fold (each run keeps "
                f"the real numbers of patients per site and fold), {p.n_permutations} times "
                f"(seed {p.seed}); p = (1 + permutations scoring at least the observed mean "
                f"balanced accuracy) / {p.n_permutations + 1}, so the smallest possible p "
                f"is {1 / (p.n_permutations + 1):.3g}.")

    def permutation_tests(self, models: list[Model]) -> pd.DataFrame:
        """`permutation_test` of every model but the chance line (none when the profile
        asks for no permutations), one row per model with the columns `summary` joins on.

        Returns
        -------
        pandas.DataFrame
            `chapter`, `model`, `maps`, `protocol`, `variant`, `score`, `p_value`,
            `n_permutations`, `seed`, `null` and `test`.
        """
        columns = [*MODEL_KEYS, "score", "p_value", "n_permutations", "seed", "null", "test"]
        rows = []
        for model in models:
            if model.spec.family in NOT_PERMUTED or self.n_permutations(model) < 1:
                continue
            fields = model.spec.fields()
            res = self.permutation_test(model)
            rows.append({"chapter": fields["chapter"], "model": display_name(fields),
                         "maps": "+".join(fields["maps"]), "protocol": fields["protocol"],
                         "variant": fields["variant"],
                         **{k: res[k] for k in columns[len(MODEL_KEYS):]}})
        return pd.DataFrame(rows, columns=columns)

    def cnn(self, family: str, maps: list[str] | tuple[str, ...], fusion: str = "branch",
            protocol: str = "inner", variant: str = "none", recipe: str = "original",
            pretrain: str = "none") -> Model:
        """A CNN family with the profile's training budget, under the CNN chapters' key.

        A recipe other than the original trains for the profile's `fair_epochs` (its
        `epochs` when unset) with its `fair_ensemble` members; `pretrain="age"` pretrains
        on age first (`training`).
        """
        from .training import CNNFit, FitSpec

        p = self.profile
        original = recipe == "original"
        epochs = p.epochs if original else (p.fair_epochs or p.epochs)
        spec = FitSpec(model=family, maps=tuple(maps), epochs=epochs,
                       batch_size=p.batch_size, patience=p.patience, seed=p.seed,
                       protocol=protocol, fusion=fusion, augment=p.augment, variant=variant,
                       recipe=recipe, pretrain=pretrain,
                       ensemble=0 if original else p.fair_ensemble, precision=p.precision)
        key = ModelSpec(CHAPTER_CNN, family, tuple(maps),
                        fusion=fusion if len(maps) > 1 else "none", protocol=protocol,
                        variant=variant, features="volumes", seed=p.seed, recipe=recipe,
                        pretrain=pretrain)
        ages = (self.cohort.participants["age"].to_numpy(float) if pretrain != "none"
                else None)
        return Model(key, CNNFit(spec, self.arrays(spec.maps), self.y, self.ids,
                                 self.grid_mm, ages=ages))

    def sklearn(self, chapter: str, family: str, maps: list[str] | tuple[str, ...],
                make: Callable, X: np.ndarray, features: str,
                settings: dict | None = None) -> Model:
        """A scikit-learn estimator (`make()` builds a fresh one) on a feature matrix;
        `settings` (what made the features besides the cohort) joins the result key."""
        from .svm import SklearnFit

        key = ModelSpec(chapter, family, tuple(maps),
                        fusion="concatenated" if len(maps) > 1 else "none",
                        features=features)
        return Model(key, SklearnFit(make, X, self.y, self.ids, settings or {}))

    def late_fusion(self, family: str, single: dict[str, list[Record]]) -> Model:
        """The single-map records of `family` averaged fold by fold."""
        key = ModelSpec(CHAPTER_CNN, family, tuple(sorted(single)), fusion="late",
                        seed=self.profile.seed)
        return Model(key, LateFusion(single))

    def fit_cnn(self, family: str, maps: list[str] | tuple[str, ...], fusion: str = "branch",
                protocol: str = "inner", variant: str = "none",
                folds: list[int] | None = None, recipe: str = "original",
                pretrain: str = "none") -> list[Record]:
        """`cross_validate(cnn(...))`. All CNN chapters store under one chapter key, so a
        model trained for one chapter is reused, not retrained, by the next."""
        return self.cross_validate(self.cnn(family, maps, fusion, protocol, variant, recipe,
                                            pretrain), folds)

    # --- what the chapters show --------------------------------------------------------

    def cnn_map_sets(self, map_sets=None) -> list[tuple[str, ...]]:
        """The map sets a CNN chapter trains on: the given ones or the profile's."""
        return [tuple(m) for m in (map_sets or self.profile.cnn_map_sets)]

    def training_description(self, models, map_sets=None) -> str:
        """One paragraph stating what a CNN chapter trains, computed from the profile."""
        from .models import build

        p = self.profile
        grid = self.mask.shape
        counts = ", ".join(f"{m} {build(m, ['gm'], grid, compile=False).count_params():,}"
                           for m in models)
        return (f"Models {', '.join(models)} on map sets "
                f"{', '.join('+'.join(m) for m in self.cnn_map_sets(map_sets))}; grid "
                f"{'x'.join(map(str, grid))} ({self.grid_mm:g} mm); parameters on one map: "
                f"{counts}. Up to {p.epochs} epochs, batch {p.batch_size}, early stopping after "
                f"{p.patience} epochs without a lower validation loss; augmentation "
                f"{'on' if p.augment else 'off'}; {p.n_folds}-fold CV x {p.n_repeats} "
                "repeat(s).")

    def cnn_chapter(self, models: list[str] | tuple[str, ...],
                    map_sets: list | tuple | None = None) -> dict:
        """Cross-validate each model on each map set; return what a family chapter shows:
        the records, learning curves, per-fold metrics and pooled summary."""
        from .stats import per_fold_metrics, summarise, with_permutation_tests

        records = [r for model in models for maps in self.cnn_map_sets(map_sets)
                   for r in self.fit_cnn(model, maps)]
        preds = predictions_of(records)
        tests = self.permutation_tests([self.cnn(model, maps) for model in models
                                        for maps in self.cnn_map_sets(map_sets)])
        histories = pd.concat([r.history.assign(model=r.name, maps=r.maps_label,
                                                fold=r.key["fold"], repeat=r.key["repeat"])
                               for r in records], ignore_index=True)
        fits = pd.DataFrame([{"model": r.name, "maps": r.maps_label,
                              "repeat": r.key["repeat"], "fold": r.key["fold"],
                              "best epoch": r.info["best_epoch"],
                              "epochs run": r.info["epochs_run"],
                              "train s": round(r.info["timings"]["fit_s"], 1),
                              "samples/s": round(r.info["timings"]["samples_per_s"], 1)}
                             for r in records])
        return {"records": records, "histories": histories, "fits": fits,
                "per_fold": per_fold_metrics(preds),
                "summary": with_permutation_tests(summarise(preds), tests)}

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

    # --- chapter 2: SVMs on handcrafted features -------------------------------------------

    def svm_models(self, maps: list[str] | tuple[str, ...]) -> list[Model]:
        """The models chapter 2 cross-validates: a linear SVM per map and on all maps
        concatenated, an RBF SVM, regional means, nilearn's Decoder and chance."""
        from .features import masked_voxels, regional_means
        from .svm import DecoderOnArrays, chance

        maps = list(maps)
        arrays = self.arrays(maps)
        voxels = {m: masked_voxels(arrays, [m], self.mask) for m in maps}
        regional, _ = regional_means(arrays, maps, self.grid_mm)
        decoder = partial(DecoderOnArrays, self.mask, self.grid_mm)
        adjusted, names = self.global_features(maps)
        models = [self.sklearn(CHAPTER_SVM, "svm_linear", [m], self.svm(), voxels[m], "voxels")
                  for m in maps]
        return models + [
            self.sklearn(CHAPTER_SVM, "svm_linear", maps, self.svm(),
                         masked_voxels(arrays, maps, self.mask), "voxels"),
            self.sklearn(CHAPTER_SVM, "svm_rbf", ["gm"], self.svm("rbf"), voxels["gm"],
                         "voxels"),
            self.sklearn(CHAPTER_SVM, "svm_linear_regional", maps, self.svm(), regional,
                         "regional means"),
            self.sklearn(CHAPTER_SVM, "svm_linear_global", maps, adjusted, names["X"],
                         GLOBAL_FEATURES, {"covariates": names["covariates"]}),
            self.sklearn(CHAPTER_SVM, "nilearn_decoder", ["gm"], decoder, voxels["gm"],
                         "voxels"),
            self.sklearn(CHAPTER_SVM, "chance", ["gm"], chance, voxels["gm"], "voxels"),
        ]

    def global_features(self, maps: list[str] | tuple[str, ...]) -> tuple[Callable, dict]:
        """The whole-brain measures of `maps` behind their covariates, and a maker of the
        SVM that adjusts for those covariates inside each fold.

        Returns
        -------
        tuple
            The estimator maker and a dict with `X` (covariate columns first, then one
            mean per map) and `covariates` (their names).
        """
        from .features import covariates, global_measures
        from .svm import adjusted_linear_svm

        arrays = self.arrays(sorted(set(maps) | {"gm", "wm"} & set(self.cohort.maps)))
        cov, names = covariates(self.cohort.participants.loc[self.ids], arrays, self.mask)
        X = np.column_stack([cov, global_measures(arrays, maps, self.mask)])
        make = partial(adjusted_linear_svm, cov.shape[1],
                       inner_folds=self.profile.svm_inner_folds)
        return make, {"X": X, "covariates": names}

    def svm_chapter(self, maps: list[str] | tuple[str, ...]) -> dict:
        """Cross-validate the SVM baselines (one per map, all maps concatenated, RBF,
        regional means, nilearn's Decoder, chance) and return what chapter 2 shows.

        Parameters
        ----------
        maps : list of str
            The maps compared one by one and concatenated.

        Returns
        -------
        dict
            `description` (Markdown), `summary` (pooled metrics with CIs, and the
            label-permutation p-value of every model but chance), `permutation` (those
            tests, with their null scores), `per_fold` (the linear SVM and chance on grey
            matter, per fold) and `cross_check` (the linear SVM and the Decoder on grey
            matter, as a sentence).
        """
        from .atlas import ATLAS_NAME
        from .features import regional_means
        from .stats import per_fold_metrics, summarise, with_permutation_tests
        from .svm import GLOBAL_C

        p, maps = self.profile, list(maps)
        models = self.svm_models(maps)
        adjusted_for = next(m.estimator.settings["covariates"] for m in models
                            if m.spec.family == "svm_linear_global")
        n_voxels = int(self.mask.sum())
        regional, region_names = regional_means(self.arrays(maps), maps, self.grid_mm)
        for model in models:
            self.cross_validate(model)
        preds = self.predictions(CHAPTER_SVM)
        permutation = self.permutation_tests(models)
        summary = with_permutation_tests(summarise(preds), permutation)
        folds = per_fold_metrics(preds)
        cmp = summary[(summary.maps == "gm") & (summary.set == "cv")
                      & summary.model.isin(["svm_linear", "nilearn_decoder"])]
        return {
            "description": (
                f"{len(self.ids)} subjects; {n_voxels} voxels per map; "
                f"{regional.shape[1]} regional features ({len(region_names) // len(maps)} "
                f"regions of {ATLAS_NAME} x {len(maps)} maps). {p.n_folds}-fold CV x "
                f"{p.n_repeats} repeat(s); C from {list(p.svm_C)} by inner "
                f"{p.svm_inner_folds}-fold CV. Whole-brain measures: the mean of each map, "
                f"adjusted for {', '.join(adjusted_for)}; "
                f"C from {list(GLOBAL_C)}. " + self.permutation_description()),
            "summary": summary, "permutation": permutation,
            "per_fold": folds[folds.model.isin(["svm_linear", "chance"])
                              & (folds.maps == "gm")],
            "cross_check": "Cross-check on grey matter, same folds: " + "; ".join(
                f"{r.model} accuracy {r.accuracy:.3f} [{r.accuracy_low:.3f}, "
                f"{r.accuracy_high:.3f}]" for r in cmp.itertuples()),
        }

    def svm(self, kernel: str = "linear") -> Callable:
        """A maker of the profile's nested-CV SVM (C grid, inner folds)."""
        from .svm import linear_svm

        return partial(linear_svm, self.profile.svm_C, self.profile.svm_inner_folds,
                       kernel=kernel)

    def svm_weights(self, map_name: str = "gm") -> dict:
        """The linear SVM refitted on every cross-validation subject (never the independent
        site), its weights back in the brain, scaled to a maximum of 1.

        Returns
        -------
        dict
            `weights` (volume), `background` (the mean map) and `regions` (the atlas
            regions with the largest mean absolute weight).
        """
        from .atlas import region_table
        from .features import masked_voxels
        from .splits import cv_subjects
        from .svm import weight_map

        arrays = self.arrays([map_name])
        rows = [self.ids.index(s) for s in cv_subjects(self.plan)]
        X = masked_voxels(arrays, [map_name], self.mask)
        w = weight_map(self.svm()(), X[rows], self.y[rows])
        volume = np.zeros(self.mask.shape, np.float32)
        volume[self.mask] = w / abs(w).max()
        return {"weights": volume, "background": np.asarray(arrays[map_name]).mean(axis=0),
                "regions": region_table(volume, self.grid_mm, top=10).round(3)}

    # --- chapter 3: 2D ImageNet features ---------------------------------------------------

    def pretrained_2d_chapter(self, backbones: list[str], maps: list[str] | None = None,
                              n_per_axis: int = 3) -> dict:
        """Features of each available backbone, per map and all maps joined, classified by
        the nested-CV linear SVM on the study's folds.

        Returns
        -------
        dict
            `status` (one row per backbone: run, with its feature size and weights, or
            why not), `summary` (pooled metrics with CIs of every stored 2D model, and
            the label-permutation p-value of each model run here), `permutation`
            (those tests, with their null scores) and `description` (the
            permutation test).
        """
        from . import pretrained2d as p2d
        from .stats import summarise, with_permutation_tests

        maps = list(maps or self.profile.fusion_maps)
        arrays = self.arrays(maps)
        status, models = {}, []
        for name in backbones:
            try:
                net = p2d.backbone(name, self.cache_dir)
            except FileNotFoundError as err:
                status[name] = f"not run: {err}"
                continue
            feats = {m: p2d.cached_features(name, net, arrays[m], m, self.cache_dir,
                                            self.fingerprint, n_per_axis) for m in maps}
            sets = {(m,): feats[m] for m in maps}
            if len(maps) > 1:
                sets[tuple(maps)] = np.hstack([feats[m] for m in maps])
            for set_maps, X in sets.items():
                settings = p2d.feature_settings(name, set_maps, n_per_axis)
                models.append(self.sklearn(CHAPTER_2D, f"2d_{name}", set_maps, self.svm(), X,
                                           f"{name} slices", settings))
                self.cross_validate(models[-1])
            status[name] = (f"run: {feats[maps[0]].shape[1]} features per map and subject; "
                            f"{p2d.weights_source(name)}")
        permutation = self.permutation_tests(models)
        return {"status": pd.DataFrame({"backbone": list(status),
                                        "status": list(status.values())}),
                "permutation": permutation,
                "summary": with_permutation_tests(summarise(self.predictions(CHAPTER_2D)),
                                                  permutation),
                "description": self.permutation_description()}

    # --- chapter 7: fusion and the published protocol ---------------------------------------

    def best_cnn_family(self, family: str | None = None) -> tuple[str, pd.DataFrame]:
        """The family chapter 7 compares: the given one, else the best plain family on grey
        matter by cross-validated AUC, else the simplest. Returns it and the ranking."""
        from .stats import summarise

        stored = self.predictions(CHAPTER_CNN)
        plain = stored[(stored.maps == "gm") & (stored.protocol == "inner")
                       & (stored.variant == "none")
                       & (stored.get("recipe", "original") == "original")
                       & (stored.get("pretrain", "none") == "none")]
        ranking = pd.DataFrame(columns=["model", "n", "accuracy", "balanced_accuracy", "auc"])
        if len(plain):
            cv = summarise(plain, n_boot=200).query("set == 'cv'")
            ranking = claims_ranking(cv)[ranking.columns].round(3)
        if family is None:
            family = ranking.iloc[0]["model"] if len(ranking) else DEFAULT_FAMILY
        return family, ranking

    def fusion_chapter(self, family: str, maps: list[str] | None = None) -> dict:
        """One model per map, branch and channel fusion of all maps and late fusion of the
        single-map models, on the same folds; each fusion against the best single map.

        Returns
        -------
        dict
            `summary` (pooled metrics with CIs) and `paired` (each fusion minus the best
            single map in balanced accuracy, with a paired bootstrap CI).
        """
        from .stats import paired_difference, summarise

        maps = list(maps or self.profile.fusion_maps)
        single = {m: self.fit_cnn(family, (m,)) for m in maps}
        fused = {"branch": self.fit_cnn(family, maps, fusion="branch"),
                 "channel": self.fit_cnn(family, maps, fusion="channel"),
                 "late": self.cross_validate(self.late_fusion(family, single))}
        preds = predictions_of([r for recs in (*single.values(), *fused.values())
                                for r in recs])
        summary = summarise(preds)
        cv = summary[(summary.set == "cv") & summary.maps.isin(maps)]
        best_map = claims_ranking(cv).iloc[0]["maps"]
        ref = preds[(preds.model == family) & (preds.maps == best_map)]
        paired = pd.DataFrame([{"fusion": label, "vs single map": best_map,
                                **paired_difference(predictions_of(recs), ref,
                                                    "balanced_accuracy")}
                               for label, recs in fused.items()])
        return {"summary": summary, "paired": paired.round(3)}

    def protocol_chapter(self, family: str, maps: tuple[str, ...] = ("gm",)) -> dict:
        """What the published protocol adds to held-out accuracy, taken apart.

        One traced fit per (repeat, fold) trains on the same 80 % of training subjects as
        ours, runs every epoch and predicts the held-out fold after each: its epoch chosen
        on the validation loss is the honest result, its epoch chosen on the held-out fold
        is selection on the test fold in the same run. The published fit trains on all
        training subjects and keeps the epoch best on the held-out fold.

        Returns
        -------
        dict
            `curves` (held-out accuracy per run and epoch), `per_fold`
            (`stats.selection_by_fold`), `comparison` (`stats.selection_inflation`: the
            three differences with their intervals) and `text` (the result as sentences).
        """
        from .results import traces_of
        from .stats import (
            SELECTION_COMPARISONS,
            epoch_curves,
            selection_by_fold,
            selection_inflation,
        )

        trace = traces_of(self.fit_cnn(family, maps, protocol="traced"))
        published = predictions_of(self.fit_cnn(family, maps, protocol="published"))
        per_fold = selection_by_fold(trace, published)
        comparison = selection_inflation(per_fold)
        d = comparison.set_index("comparison")

        def diff(name: str) -> str:
            r = d.loc[name]
            return (f"**{r['difference']:+.3f}** (95 % CI {r['ci_low']:+.3f} to "
                    f"{r['ci_high']:+.3f})")

        select, data, total = (name for name, _, _ in SELECTION_COMPARISONS)
        text = (f"Held-out accuracy, mean over {len(per_fold)} fits (repeat x fold): "
                f"{per_fold['val_chosen'].mean():.3f} with the epoch chosen on the "
                f"validation loss, {per_fold['test_chosen'].mean():.3f} with the epoch "
                f"chosen on the held-out fold in the same run, "
                f"{per_fold['published'].mean():.3f} under the published protocol. "
                f"Choosing the epoch on the test fold adds {diff(select)}; training on "
                f"all training subjects instead of 80 % adds {diff(data)}; together "
                f"{diff(total)} ({comparison['test'].iloc[0]}).")
        return {"curves": epoch_curves(trace), "per_fold": per_fold,
                "comparison": comparison.round(4), "text": text}

    # --- chapter 8: saliency ------------------------------------------------------------------

    def plain_cnn_records(self, multi: bool = False) -> list[Record]:
        """Stored CNN records of plain families (our protocol, no variant, no late or
        channel fusion) on grey matter alone, or on several maps with branch fusion; in
        plan order."""
        recs = [r for r in self.records(CHAPTER_CNN)
                if r.key["protocol"] == "inner" and r.key["variant"] == "none"
                and "recipe" not in r.key and "pretrain" not in r.key
                and r.key["fusion"] == ("branch" if multi else "none")
                and (multi or r.maps == ["gm"])]
        return sorted(recs, key=lambda r: (r.key["family"], r.key["repeat"], r.key["fold"]))

    def saliency_chapter(self, methods: list[str] | tuple[str, ...],
                         n_subjects: int = 3) -> dict:
        """Group saliency of every stored grey-matter family, scored against the planted
        regions; sanity checks of the best method; a branch-fusion model map by map.

        With no stored family (the chapter run on its own) the default family is trained.

        Parameters
        ----------
        methods : list of str
            Saliency methods (`saliency.METHODS`).
        n_subjects : int
            Held-out patients explained one by one and used by the sanity checks.

        Returns
        -------
        dict
            `description`, `localisation` (empty without ground truth), `best` (family and
            method, best localisation AUC), `best_text`, `best_map`, `background`,
            `regions`, `planted_regions`, `randomisation`, `sanity`, `multi_text`,
            `multi` (the branch-fusion model's localisation per map), `subjects` (one dict
            of volumes per explained subject) and `subject_ids`.
        """
        from . import saliency as sal
        from .atlas import ATLAS_NAME, region_table
        from .synthetic import planted_masks

        p, brain = self.profile, self.mask
        records = self.plain_cnn_records() or self.fit_cnn(DEFAULT_FAMILY, ("gm",))
        families = sorted({r.key["family"] for r in records})
        arrays = self.arrays(["gm"])
        masks = planted_masks(self.cohort.root)
        truth = masks.get("gm", {})
        root = self.store.root / "saliency"
        group = {fam: sal.group_maps([r for r in records if r.key["family"] == fam], arrays,
                                     self.ids, methods, brain,
                                     max_subjects=p.saliency_subjects,
                                     occlusion_subjects=p.occlusion_subjects,
                                     save_dir=root / fam, grid_mm=self.grid_mm,
                                     sources=(self.cohort.root, self.store.root))
                 for fam in families}
        loc = sal.localisation_table(group, truth, brain, self.grid_mm)
        best = ({"family": families[0], "method": methods[0]} if loc.empty
                else loc.sort_values("auc", ascending=False).iloc[0].to_dict())
        best_map = group[best["family"]][best["method"]]["gm"]

        rec = next(r for r in records if r.key["family"] == best["family"])
        model, norm = sal.load_fit(rec)
        pred = rec.predictions
        subjects = [self.ids.index(s)
                    for s in pred[(pred.set == "cv") & (pred.y_true == 1)].participant_id[
                        :n_subjects]]
        x = norm.transform({"gm": arrays["gm"]}, np.array(subjects))
        cheap = [m for m in methods if m != "occlusion"]
        rand = sal.randomisation_check(model, x, ["gm"], cheap, brain)
        null = self.fit_cnn(best["family"], ("gm",), folds=[rec.key["fold"]],
                            variant="shuffled-labels")
        null_model, null_norm = sal.load_fit(null[0])
        x_null = null_norm.transform({"gm": arrays["gm"]}, np.array(subjects))
        sanity = sal.sanity_checks(model, x, null_model, x_null, ["gm"], cheap, brain, rand)

        one = np.abs(sal.compute(best["method"], model, x, ["gm"], brain)["gm"]) * brain
        planted = ({"planted": np.any(list(truth.values()), axis=0).astype("float32")}
                   if truth else {})
        out = {
            "description": (f"Families explained: {', '.join(families)} (grey matter); up "
                            f"to {p.saliency_subjects} patients per fold "
                            f"({p.occlusion_subjects} for occlusion); methods: "
                            f"{', '.join(methods)}. Maps saved as one BIDS-derivatives dataset "
                            f"per family under `{root}` (group maps at its root, each "
                            "explained patient's in its `sub-` folder, a JSON sidecar "
                            f"beside each). Atlas: {ATLAS_NAME}."),
            "localisation": loc.round(3), "best": best,
            "best_text": "" if loc.empty else (
                f"Best localisation: **{best['method']}** on **{best['family']}**, AUC "
                f"{best['auc']:.3f}; {100 * best['top1pct_inside']:.0f} % of its top 1 % "
                f"voxels lie in planted regions that cover {100 * best['chance_share']:.0f} "
                "% of the brain."),
            "best_map": best_map / best_map.max(),
            "background": np.asarray(arrays["gm"]).mean(axis=0),
            "regions": region_table(best_map, self.grid_mm, top=10).round(4),
            "planted_regions": (sal.planted_in_top_regions(best_map, truth, self.grid_mm,
                                                           top=sal.TOP_REGIONS)
                                if truth else pd.DataFrame()),
            "randomisation": rand, "sanity": sanity.round(3),
            "subjects": [{"gm": np.asarray(arrays["gm"][s]), "saliency": one[i], **planted}
                         for i, s in enumerate(subjects)],
            "subject_ids": [self.ids[s] for s in subjects],
        }
        out.update(self._multi_branch_saliency(cheap, masks))
        return out

    def _multi_branch_saliency(self, methods: list[str], masks: dict) -> dict:
        """The first stored branch-fusion family explained map by map."""
        from . import saliency as sal

        fused = self.plain_cnn_records(multi=True)
        if not fused:
            return {"multi_text": "No multi-branch model is stored: run chapter 7 first.",
                    "multi": pd.DataFrame()}
        family = fused[0].key["family"]
        fused = [r for r in fused if r.key["family"] == family]
        fmaps = fused[0].maps
        multi = sal.group_maps(fused, self.arrays(fmaps), self.ids, methods, self.mask,
                               max_subjects=self.profile.saliency_subjects,
                               save_dir=self.store.root / "saliency" / f"{family}-branch",
                               grid_mm=self.grid_mm,
                               sources=(self.cohort.root, self.store.root))
        return {"multi_text": f"{family}, branch fusion of {', '.join(fmaps)}:",
                "multi": sal.per_map_localisation(multi, masks, self.mask).round(3)}

    # --- chapter 10: a fair chance for 3D CNNs ---------------------------------------------

    def fair_cnn_chapter(self, faithful: list[str] | tuple[str, ...] | None = None,
                         modern: list[str] | tuple[str, ...] | None = None,
                         modern_recipe_originals: list[str] | tuple[str, ...] | None = None,
                         pretrained: list[str] | tuple[str, ...] | None = None) -> dict:
        """The faithful families, modern nets trained the modern way, original families
        trained the modern way, pretrained modern nets, the linear SVM and the Decoder, on
        the same folds and grey matter; stored records are read back, never retrained.

        Parameters
        ----------
        faithful : list of str, optional
            Original families as published (default: those chapters 4-6 train).
        modern : list of str, optional
            Modern nets trained with the modern recipe (default: `profile.fair_modern`).
        modern_recipe_originals : list of str, optional
            Original families also trained with the modern recipe, to separate recipe
            from architecture (default: `profile.fair_originals`).
        pretrained : list of str, optional
            Modern nets pretrained on age, then fine-tuned (default:
            `profile.fair_pretrained`).

        Returns
        -------
        dict
            `description`, `summary` (pooled metrics with CIs), `paired` (accuracy
            differences on the same subjects), `verdict` (the conclusion as Markdown),
            `histories` (learning curves of the modern fits) and `cost` (parameters, fit
            time, throughput).
        """
        from . import fair
        from .features import masked_voxels
        from .recipes import get_recipe
        from .svm import DecoderOnArrays

        p, maps = self.profile, ("gm",)
        faithful = list(faithful or (*p.sequential_models, *FAITHFUL_FAMILIES))
        modern = list(modern or p.fair_modern)
        originals = list(p.fair_originals if modern_recipe_originals is None
                         else modern_recipe_originals)
        pretrained = list(p.fair_pretrained if pretrained is None else pretrained)
        voxels = masked_voxels(self.arrays(["gm"]), ["gm"], self.mask)
        linear = [self.sklearn(CHAPTER_SVM, "svm_linear", maps, self.svm(), voxels, "voxels"),
                  self.sklearn(CHAPTER_SVM, "nilearn_decoder", maps,
                               partial(DecoderOnArrays, self.mask, self.grid_mm), voxels,
                               "voxels")]
        cnns = {"faithful": [self.cnn(f, maps) for f in faithful],
                "modern": ([self.cnn(f, maps, recipe="modern") for f in (*modern, *originals)]
                           + [self.cnn(f, maps, recipe="modern", pretrain="age")
                              for f in pretrained])}

        groups = fair.Groups(*({display_name(m.spec.fields()): self.cross_validate(m)
                                for m in side}
                               for side in (linear, cnns["faithful"], cnns["modern"])))
        summary = fair.summarise_groups(groups)

        def name(family: str, pretrain: str = "none") -> str:
            return display_name(self.cnn(family, maps, recipe="modern",
                                         pretrain=pretrain).spec.fields())

        levers = [("recipe", name(f), f) for f in originals]
        levers += [("architecture", name(m), name(o)) for m in modern for o in originals]
        levers += [("pretraining", name(f, "age"), name(f)) for f in pretrained]
        paired = fair.paired_comparisons(groups, summary, levers)
        members = len(get_recipe("modern").seeds()[:p.fair_ensemble or None])
        return {
            "description": (
                f"Grey matter, {p.n_folds}-fold CV x {p.n_repeats} repeat(s), the same folds "
                f"for every model. Faithful families: {', '.join(faithful)} (stored records "
                f"of chapters 4-6). Modern recipe ({p.fair_epochs or p.epochs} epochs at "
                f"most, an ensemble of {members} seed(s)): "
                f"{', '.join((*modern, *originals))}; "
                f"pretrained on age (older or younger than the fold's median age, then "
                f"fine-tuned): "
                f"{', '.join(pretrained) or 'none'}. Linear models: "
                f"{', '.join(fair.LINEAR_FAMILIES)} (chapter 2)."),
            "summary": summary, "paired": paired.round(4),
            "verdict": fair.verdict(summary, paired, groups) + self._beyond_grey_matter(),
            "histories": fair.histories(groups), "cost": fair.cost_table(groups),
        }

    def _beyond_grey_matter(self) -> str:
        """A sentence on chapter 2's best stored model when it reads more than grey
        matter and beats every grey-matter model here, so that the chapter's verdict is
        never read as the best this cohort allows."""
        from .stats import summarise
        from .tables import format_interval

        stored = self.predictions(CHAPTER_SVM)
        if stored.empty:
            return ""
        cv = summarise(stored)
        cv = cv[(cv["set"] == "cv") & (cv["model"] != "chance")]
        best = cv.sort_values(["accuracy", "model"], ascending=[False, True]).iloc[0]
        if best["maps"] == "gm":
            return ""
        accuracy = format_interval(best["accuracy"], best["accuracy_low"],
                                   best["accuracy_high"], 3)
        return (f" Beyond grey matter, chapter 2's {best['model']} on {best['maps']} reaches "
                f"cross-validated accuracy {accuracy} (corrected repeated-CV t): the "
                "comparison above is among grey-matter models only.")

    # --- appendix: effect size x cohort size, by simulation -----------------------------

    def sweep_chapter(self) -> dict:
        """The SVMs over the profile's effect scales x cohort sizes and its CNN on the
        chosen cells, each cell a synthetic cohort of its own (generated once under
        `data/sweep/`), fits stored under the `sweep` chapter of this study's store.

        Returns
        -------
        dict
            `description`, `table` (`sweep.TABLE_COLUMNS`: per cell, model and set, with
            the test behind each interval), `comparisons` (the CNN against the better SVM
            of each cell it ran on, paired on folds), `verdict` (`overtakes`, `never`,
            `open` or `not tested`) and `text` (the sentence that says where, if
            anywhere, the CNN overtakes the SVMs).
        """
        from . import sweep as sw

        p = self.profile
        res = sw.sweep(p.sweep_scales, p.sweep_sizes, p.sweep_grid_mm, p.n_folds,
                       p.sweep_repeats, p.n_sites, p.cohort_seed,
                       data_dir=default_paths(p)["sweep"], cache_dir=self.cache_dir,
                       results_dir=self.store.root, svm_C=p.svm_C,
                       inner_folds=p.svm_inner_folds, cnn=sw.cnn_settings(p),
                       cnn_cells=sw.cnn_cells(p))
        verdict, text = sw.verdict(res.comparisons)
        return {"description": sw.sweep_description(p), "table": res.table,
                "comparisons": res.comparisons, "verdict": verdict, "text": text}

    # --- chapter 9: every model side by side -----------------------------------------------

    def summary_chapter(self) -> dict:
        """Every stored model on this cohort: pooled metrics, fold models beside their
        vote, DeLong comparisons with the best model and the study's claims.

        Returns
        -------
        dict
            `predictions`, `summary`, `counts` (a sentence), `export` (the CSV written),
            `comparisons` (DeLong against the best model by cross-validated AUC on the
            independent site, Holm-corrected; empty without one), `claims` and `best`
            (the best cross-validated accuracy against the oracle, when known).
        """
        from .claims import headline_claims, ranking
        from .stats import compare_auc, summarise, with_permutation_tests

        preds = self.predictions()
        summary = with_permutation_tests(
            summarise(preds), self.stored_permutation_tests(set(preds["hash"])))
        export = self.store.root / "summary.csv"
        summary.to_csv(export, index=False)
        order = ranking(summary)["label"].tolist()
        pairs = [(order[0], other) for other in order[1:]]
        has_independent = bool((preds.set == "independent").any())
        comparisons = (compare_auc(preds, pairs, "independent").round(4)
                       if has_independent and pairs else pd.DataFrame())
        best = ranking(summary, "accuracy").iloc[0]
        return {
            "predictions": preds, "summary": summary, "export": export,
            "counts": (f"{summary.model.nunique()} models, {preds.hash.nunique()} stored "
                       f"fits, {preds.participant_id.nunique()} subjects."),
            "comparisons": comparisons,
            "claims": headline_claims(summary, preds).round(4),
            "best": "" if self.truth is None else (
                f"Best cross-validated accuracy: **{best.accuracy:.3f}** ({best.model}, "
                f"{best.maps}). The oracle (a classifier given the true region means, "
                f"cross-validated) reaches **{self.oracle_accuracy:.3f}**; the Bayes "
                "ceiling of an observer of the region means is "
                f"**{self.truth['bayes_ceiling']['balanced_accuracy']:.3f}** balanced accuracy "
                "(an expectation, not a "
                "bound for models that read whole images); in expectation no classifier "
                f"exceeds **{self.truth['ceiling_accuracy']:.3f}**, because the unaffected "
                "patients look exactly like controls."),
        }


#: the family trained when no other is stored (a chapter run on its own)
DEFAULT_FAMILY = "sequential_2"
#: the original families of chapters 5 and 6, beside the profile's Sequential depths
FAITHFUL_FAMILIES = ("inception_1", "inception_2", "inception_resnet_1", "inception_resnet_2")

