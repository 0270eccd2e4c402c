"""The study's grid of units: what every chapter of a profile fits, as data, and its execution.

`chapter_models(profile)` lists each model a chapter cross-validates, from the profile
and the chapters' default parameters (chapter 10's modern-recipe and pretrained nets
included, each costed with its ensemble members and pretraining), without loading any
data; `units` expands it over the folds and repeats. With a `Study` open, `unit_keys` builds the exact result keys the
chapters store under (through `Study.cnn`, `Study.svm_models` and `Study.sklearn`), so
`plan` counts what is stored and `run_grid` fills the store the chapters then read
without training anything.

Two chapter decisions depend on results: chapter 7 compares the best family of chapters
4-6 (known once they are stored) and chapter 8 trains a shuffled-label null model of the
family whose saliency localises best (known only inside that chapter). The grid runs the
first after the families are stored and leaves the second, one fit per repeat, to its
chapter. Chapter 3's SVMs on 2D features are listed and counted but also left to their
chapter, which extracts the features (a network per backbone, cached once). Late fusion
fits nothing: it averages stored records, so it runs where the grid is driven, after its
single-map models.

`run_grid` runs units serially (the default: no Dask process is started) or as one
`dask.distributed` task per unit, keyed by the unit's hash so that no two workers ever
compute the same record; every worker writes its record atomically into the shared
results store, and a task whose worker dies is rerun elsewhere. On a worker each fit runs
in a child process with no other Python thread, so its results repeat the serial run's
bit for bit (at the same thread settings, `worker_env`).
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from .atomic import write_text
from .config import Profile, config_hash, default_paths, get_profile
from .crossval import CHAPTER_2D, CHAPTER_CNN, CHAPTER_SVM, ModelSpec
from .features import GLOBAL_FEATURES
from .stats import NOT_PERMUTED

#: the chapters' default parameters, as their `parameters` cells set them
SVM_MAPS = ("gm", "wm", "fa", "md")
BACKBONES = ("efficientnet_lite0", "vgg16", "resnet50", "inceptionv3")
N_PER_AXIS = 3
INCEPTION = ("inception_1", "inception_2")
INCEPTION_RESNET = ("inception_resnet_1", "inception_resnet_2")
#: family placeholders for the two choices made from results
BEST = "best of chapters 4-6"
SALIENCY_BEST = "best saliency family"
#: columns of the unit table, in order
UNIT_COLUMNS = ("notebook", "kind", "family", "maps", "fusion", "protocol", "variant",
                "recipe", "pretrain", "features", "fold", "repeat", "seed")


@dataclass(frozen=True)
class GridModel:
    """One model a chapter cross-validates: its record key fields (`spec`) and how the
    grid treats it.

    `kind` is `cnn`, `svm`, `2d` or `late`; `folds` is None for every fold, or the number
    of folds per repeat the chapter runs (chapter 8's null model: one). `grid` says who
    runs it: `grid` (any time), `after` (once chapters 4-6 are stored) or `chapter` (only
    its chapter can decide it).
    """

    notebook: str
    kind: str
    spec: ModelSpec
    folds: int | None = None
    grid: str = "grid"

    @property
    def family(self) -> str:
        return self.spec.family

    @property
    def maps(self) -> tuple[str, ...]:
        return self.spec.maps

    @property
    def fusion(self) -> str:
        return self.spec.fusion

    @property
    def features(self) -> str:
        return self.spec.features

    @property
    def cnn_fusion(self) -> str:
        """The fusion argument `Study.cnn` is called with (its default for one map)."""
        return self.fusion if self.fusion in ("branch", "channel") else "branch"


#: the results chapter each kind of model is stored under
STORED_UNDER = {"svm": CHAPTER_SVM, "2d": CHAPTER_2D, "cnn": CHAPTER_CNN, "late": CHAPTER_CNN}


def _model(notebook: str, kind: str, family: str, maps: tuple[str, ...], fusion: str = "none",
           seed: int = 0, folds: int | None = None, grid: str = "grid", **fields) -> GridModel:
    spec = ModelSpec(STORED_UNDER[kind], family, tuple(maps), fusion, seed=seed, **fields)
    return GridModel(notebook, kind, spec, folds, grid)


def _cnn(notebook: str, family: str, maps: tuple[str, ...], fusion: str = "branch",
         **kw) -> GridModel:
    return _model(notebook, "cnn", family, tuple(maps), fusion if len(maps) > 1 else "none",
                  **kw)


def chapter_models(profile: str | Profile) -> list[GridModel]:
    """Every model the chapters fit on `profile` with their default parameters, once.

    A model two chapters share (chapter 7's single-map models are chapters 4-6's) is
    listed under the first chapter that fits it.
    """
    p = get_profile(profile)
    sets = [tuple(m) for m in p.cnn_map_sets]
    fusion_maps = tuple(p.fusion_maps)
    out = [_model(CHAPTER_SVM, "svm", "svm_linear", (m,), features="voxels") for m in SVM_MAPS]
    out += [_model(CHAPTER_SVM, "svm", "svm_linear", SVM_MAPS, "concatenated", features="voxels"),
            _model(CHAPTER_SVM, "svm", "svm_rbf", ("gm",), features="voxels"),
            _model(CHAPTER_SVM, "svm", "svm_linear_regional", SVM_MAPS, "concatenated",
                   features="regional means"),
            _model(CHAPTER_SVM, "svm", "svm_linear_global", SVM_MAPS, "concatenated",
                   features=GLOBAL_FEATURES),
            _model(CHAPTER_SVM, "svm", "nilearn_decoder", ("gm",), features="voxels"),
            _model(CHAPTER_SVM, "svm", "chance", ("gm",), features="voxels")]
    joined = [fusion_maps] if len(fusion_maps) > 1 else []
    out += [_model(CHAPTER_2D, "2d", f"2d_{b}", maps,
                   "concatenated" if len(maps) > 1 else "none", features=f"{b} slices",
                   grid="chapter")
            for b in BACKBONES for maps in [(m,) for m in fusion_maps] + joined]
    for notebook, families in (("04_sequential", p.sequential_models),
                               ("05_inception", INCEPTION),
                               ("06_inception_resnet", INCEPTION_RESNET)):
        out += [_cnn(notebook, f, maps, seed=p.seed) for f in families for maps in sets]
    ch7 = {"seed": p.seed, "grid": "after"}
    chapter7 = [_cnn("07_multimodal", BEST, (m,), **ch7) for m in fusion_maps]
    chapter7 += [_cnn("07_multimodal", BEST, fusion_maps, "branch", **ch7),
                 _cnn("07_multimodal", BEST, fusion_maps, "channel", **ch7),
                 _model("07_multimodal", "late", BEST, tuple(sorted(fusion_maps)), "late",
                        **ch7),
                 _cnn("07_multimodal", BEST, ("gm",), **ch7),
                 _cnn("07_multimodal", BEST, ("gm",), protocol="traced", **ch7),
                 _cnn("07_multimodal", BEST, ("gm",), protocol="published", **ch7)]
    fitted = {replace(m.spec, family="") for m in out if m.kind == "cnn"}
    for m in chapter7:  # the best family is one of chapters 4-6's: their fits are reused
        sig = replace(m.spec, family="")
        if sig not in fitted:
            out.append(m)
            fitted.add(sig)
    out.append(_cnn("08_saliency", SALIENCY_BEST, ("gm",), seed=p.seed,
                    variant="shuffled-labels", folds=1, grid="chapter"))
    # chapter 10: its faithful families and linear models are chapters 2 and 4-6's
    out += [_cnn("10_fair_cnn", f, ("gm",), seed=p.seed, recipe="modern")
            for f in dict.fromkeys((*p.fair_modern, *p.fair_originals))]
    out += [_cnn("10_fair_cnn", f, ("gm",), seed=p.seed, recipe="modern", pretrain="age")
            for f in p.fair_pretrained]
    return out


def units(profile: str | Profile, models: Iterable[GridModel] | None = None) -> pd.DataFrame:
    """One row per unit (model x fold x repeat) of `models` (default: every chapter's)."""
    p = get_profile(profile)
    rows = []
    for i, m in enumerate(chapter_models(p) if models is None else models):
        for r in range(p.n_repeats):
            for f in range(p.n_folds if m.folds is None else m.folds):
                rows.append({"model": i, "notebook": m.notebook, "kind": m.kind,
                             **m.spec.fields(), "recipe": m.spec.recipe,
                             "pretrain": m.spec.pretrain, "maps": "+".join(m.maps), "fold": f,
                             "repeat": r, "grid": m.grid})
    return pd.DataFrame(rows, columns=["model", *UNIT_COLUMNS, "grid"])


# --- exact keys from an open study ---------------------------------------------------------


def resolve_family(model: GridModel, family: str | None) -> GridModel:
    """`model` with the best family filled in (unchanged when it names its own)."""
    if model.family == BEST and family is not None:
        return replace(model, spec=replace(model.spec, family=family))
    return model


def build(study, model: GridModel):
    """The `crossval.Model` a chapter builds for `model`, through the study's own builders
    (so its keys are the chapter's)."""
    if model.kind == "cnn":
        return study.cnn(model.family, model.maps, model.cnn_fusion, model.spec.protocol,
                         model.spec.variant, recipe=model.spec.recipe,
                         pretrain=model.spec.pretrain)
    if model.kind == "svm":
        if _SVM[0] is not study:  # features are computed once per study
            _SVM[:] = [study, study.svm_models(SVM_MAPS)]
        for m in _SVM[1]:
            if (m.spec.family, m.spec.maps, m.spec.features) == (
                    model.family, model.maps, model.features):
                return m
        raise ValueError(f"Chapter 2 has no model {model.family} on {model.maps}.")
    if model.kind == "2d":
        from .pretrained2d import feature_settings

        settings = feature_settings(model.family.removeprefix("2d_"), model.maps, N_PER_AXIS)
        return study.sklearn(CHAPTER_2D, model.family, model.maps, study.svm(), None,
                             model.features, settings)
    raise ValueError(f"{model.kind} models are built from stored records, not by the grid.")


#: the last study's chapter-2 models
_SVM: list = [None, []]


def unit_keys(study, model: GridModel) -> list[dict]:
    """The result keys of `model`'s units, as its chapter stores them."""
    return study.unit_keys(build(study, model))


def stored_units(study, table: pd.DataFrame, family: str | None = None) -> pd.Series:
    """Per unit row of `table`: whether its record is in the study's store (False where
    the key cannot be known yet: the best family before chapters 4-6 are stored)."""
    models = chapter_models(study.profile)
    out = pd.Series(False, index=table.index)
    for i, rows in table.groupby("model"):
        m = resolve_family(models[i], family)
        if m.family in (BEST, SALIENCY_BEST):
            continue
        if m.kind == "2d":
            try:
                keys = {(k["repeat"], k["fold"]): k for k in unit_keys(study, m)}
            except FileNotFoundError:  # no weights for this backbone: it cannot be stored
                continue
        elif m.kind == "late":
            keys = _late_keys(study, m)
            if keys is None:
                continue
        else:
            keys = {(k["repeat"], k["fold"]): k for k in unit_keys(study, m)}
        out[rows.index] = [study.store.get(keys[(r, f)]) is not None
                           for r, f in zip(rows.repeat, rows.fold, strict=True)]
    return out


def _late_keys(study, model: GridModel) -> dict | None:
    """Late fusion's keys, which name the single-map records it averages: known once
    those are all stored."""
    parts = {}
    for mp in model.maps:
        single = _cnn(model.notebook, model.family, (mp,))
        parts[mp] = [study.store.get(k) for k in unit_keys(study, single)]
        if any(r is None for r in parts[mp]):
            return None
    keys = study.unit_keys(study.late_fusion(model.family, parts))
    return {(k["repeat"], k["fold"]): k for k in keys}


# --- throughput and estimates ---------------------------------------------------------------


def throughput_path(results: Path) -> Path:
    return Path(results) / "throughput.json"


def measure_throughput(profile: str | Profile, families: Iterable[str] | None = None,
                       n_subjects: int = 16, min_s: float = 1.0) -> dict:
    """What a CNN unit costs on this machine, per family on the profile's grid and batch:
    steady training and inference samples/s (timed batch by batch after the graph is
    traced, augmentation included when the profile augments), and the fixed part of a
    unit (a 1-epoch fit of the project's own fit path, with its model saved, less its
    steady part); and one nested-CV linear SVM fit on one map's voxels.

    Returns
    -------
    dict
        `cnn`: per family `overhead_s`, `train_per_s` and `infer_per_s`; `svm_s`;
        `grid_mm`, `threads` and `cpu_count` of the measurement.
    """
    import tempfile

    import keras

    from . import training
    from .models import build as build_model
    from .preprocessing import augment_batch, model_inputs
    from .svm import linear_svm
    from .volumes import brain_mask

    p = get_profile(profile)
    training.configure_tensorflow()
    mask = brain_mask(p.grid_mm)
    rng = np.random.default_rng(0)
    x = {"gm": rng.random((n_subjects, *mask.shape), dtype=np.float32)}
    y = np.arange(n_subjects) % 2
    ids = [f"s{i:02d}" for i in range(n_subjects)]
    half = n_subjects // 2

    def rate(step, size: int) -> float:
        step()  # traced once
        n, t0 = 0, time.perf_counter()
        while n < 3 or time.perf_counter() - t0 < min_s:
            step()
            n += 1
        return n * size / (time.perf_counter() - t0)

    cnn = {}
    fams = families or sorted({m.family for m in chapter_models(p)
                               if m.kind == "cnn" and m.family not in (BEST, SALIENCY_BEST)})
    bs = p.batch_size
    batch = {"gm": x["gm"][:bs]}
    labels = np.eye(2, dtype=np.float32)[y[:bs]]
    for fam in fams:
        model = build_model(fam, ["gm"], mask.shape)

        def train_step(model=model):
            xb = augment_batch(batch, rng, p.grid_mm) if p.augment else batch
            model.train_on_batch(model_inputs(xb, ("gm",), "branch"), labels)

        train = rate(train_step, bs)
        infer = rate(lambda model=model: model.predict_on_batch(
            model_inputs(batch, ("gm",), "branch")), bs)
        keras.backend.clear_session()
        spec = training.FitSpec(model=fam, maps=("gm",), epochs=1, batch_size=bs,
                                patience=1, seed=p.seed, protocol="published",
                                augment=p.augment)
        t0 = time.perf_counter()
        out = training.fit_predict(spec, x, y, ids, ids[:half], ids[half:], [], p.grid_mm)
        with tempfile.TemporaryDirectory() as tmp:
            out["artifacts"](Path(tmp))
        took = time.perf_counter() - t0
        steady = half / train + 2 * (n_subjects - half) / infer
        cnn[fam] = {"overhead_s": max(took - steady, 0.0), "train_per_s": train,
                    "infer_per_s": infer}
    X = x["gm"][:, mask]
    t0 = time.perf_counter()
    linear_svm(p.svm_C, p.svm_inner_folds).fit(X[:half], y[:half])
    svm_s = time.perf_counter() - t0
    return {"cnn": cnn, "svm_s": svm_s, "grid_mm": p.grid_mm,
            "threads": int(os.environ.get("MRI3DCNN_TF_THREADS", os.cpu_count() or 1)),
            "cpu_count": os.cpu_count()}


def load_or_measure(profile: str | Profile, results: Path, path: Path | None = None) -> dict:
    """The given throughput file, else the one cached in the results folder for this
    profile's grid, else a fresh measurement (cached there)."""
    if path is not None:
        return json.loads(Path(path).read_text())
    p = get_profile(profile)
    cached = throughput_path(results)
    if cached.exists():
        found = json.loads(cached.read_text())
        if found.get("grid_mm") == p.grid_mm and "train_per_s" in next(
                iter(found["cnn"].values()), {}):
            return found
    found = measure_throughput(p)
    write_text(cached, json.dumps(found, indent=2))
    return found


def estimate_seconds(profile: str | Profile, table: pd.DataFrame, throughput: dict,
                     n_cv: float | None = None) -> pd.Series:
    """Estimated seconds of each unit: the measured fixed part, then every epoch of the
    profile (an upper bound under early stopping) of training on the fit subjects and
    inference on the validation subjects (and on the held-out fold for a traced fit), a
    branch per map for branch fusion, and the held-out and independent predictions.
    Chapter 7's family, not known before chapters 4-6 are stored, is costed as the
    slowest measured. An SVM unit scales with its maps, and carries its share of the
    model's permutation test (`profile.n_permutations` more fits; a stored unit counts as
    done, though its test may not be); late fusion costs nothing."""
    p = get_profile(profile)
    if n_cv is None:
        n_cv = p.n_subjects * (p.n_sites - 1) / p.n_sites
    n_train = n_cv * (p.n_folds - 1) / p.n_folds
    n_test = p.n_subjects - n_train
    cnn = throughput["cnn"]
    slowest = max(cnn.values(), key=lambda t: t["overhead_s"] + 1 / t["train_per_s"])
    out = []
    for row in table.itertuples():
        n_maps = len(row.maps.split("+"))
        if row.kind == "cnn":
            t = cnn.get(row.family, slowest)
            branches = n_maps if row.fusion == "branch" else 1
            fit, val = ((n_train, n_cv - n_train) if row.protocol == "published"
                        else (0.8 * n_train, 0.2 * n_train))
            if row.protocol == "traced":  # the held-out fold is predicted every epoch
                val += n_cv - n_train
            epoch = fit / t["train_per_s"] + val / t["infer_per_s"]
            epochs, fits = p.epochs, 1
            if row.recipe != "original":
                epochs = p.fair_epochs or p.epochs
                fits = recipe_members(p) + (row.pretrain != "none")
            out.append(fits * (t["overhead_s"] + branches * (epochs * epoch
                                                             + n_test / t["infer_per_s"])))
        elif row.kind in ("svm", "2d"):
            # the model's label-permutation test reruns its cross-validation, unit by unit
            perms = 0 if row.family in NOT_PERMUTED else p.n_permutations
            out.append(throughput["svm_s"] * n_maps * (1 + perms))
        else:
            out.append(0.0)
    return pd.Series(out, index=table.index, dtype=float)


def recipe_members(profile: str | Profile) -> int:
    """Networks a modern-recipe unit trains: its ensemble's members."""
    from .recipes import get_recipe

    p = get_profile(profile)
    return len(get_recipe("modern").seeds()[:p.fair_ensemble or None])


def format_duration(seconds: float) -> str:
    """`3 d 4 h`, `2 h 05 min`, `4 min 10 s` or `12 s`."""
    s = int(round(seconds))
    d, s = divmod(s, 86400)
    h, s = divmod(s, 3600)
    m, s = divmod(s, 60)
    if d:
        return f"{d} d {h} h"
    if h:
        return f"{h} h {m:02d} min"
    return f"{m} min {s:02d} s" if m else f"{s} s"


@dataclass
class Plan:
    """The units of a profile, which are stored, and what the rest should cost."""

    profile: str
    table: pd.DataFrame
    workers: int

    @property
    def remaining_s(self) -> float:
        return float(self.table.loc[~self.table.stored, "estimate_s"].sum())

    def summary(self) -> pd.DataFrame:
        """Units, stored units and estimated hours per chapter and kind."""
        t = self.table.assign(pending_s=self.table.estimate_s.where(~self.table.stored, 0.0))
        return (t.groupby(["notebook", "kind"], sort=False)
                .agg(units=("fold", "size"), stored=("stored", "sum"),
                     estimate_h=("pending_s", lambda s: round(s.sum() / 3600, 2)))
                .reset_index())

    def estimate_line(self) -> str:
        """The one line `make book` prints before it starts."""
        rest = self.remaining_s
        n, done = len(self.table), int(self.table.stored.sum())
        return (f"mri3dcnn plan: profile {self.profile}: {n} units, {done} stored; the rest "
                f"~{format_duration(rest)} serial, ~{format_duration(rest / self.workers)} "
                f"on {self.workers} workers")


def make_plan(profile: str | Profile, results_dir: Path | None = None,
              cohort_dir: Path | None = None, throughput: Path | None = None,
              workers: int = 1, measure: bool = True) -> Plan:
    """Every unit of `profile`, whether stored and its estimated time.

    Parameters
    ----------
    profile : str or Profile
    results_dir, cohort_dir : Path, optional
        The results store and cohort (defaults: the profile's). Stored units are counted
        only when the cohort exists: keys carry its fingerprint.
    throughput : Path, optional
        A throughput JSON (`measure_throughput`); default: cached in the results folder,
        measured on first use.
    workers : int
        The number of workers the parallel estimate assumes.
    measure : bool
        Measure throughput when none is cached (otherwise estimates are left out).

    Returns
    -------
    Plan
    """
    from .study import Study

    p = get_profile(profile)
    paths = default_paths(p)
    results = Path(results_dir) if results_dir else paths["results"]
    cohort = Path(cohort_dir) if cohort_dir else paths["cohort"]
    table = units(p)
    table["stored"] = False
    n_cv = None
    if (cohort / "participants.tsv").exists():
        study = Study.open(p, cohort, results)
        family = best_family(study)
        table["stored"] = stored_units(study, table, family)
        n_cv = float(((study.plan.repeat == 0) & (study.plan.fold >= 0)).sum())
    if throughput is not None or measure or throughput_path(results).exists():
        tp = load_or_measure(p, results, throughput)
        table["estimate_s"] = estimate_seconds(p, table, tp, n_cv)
    else:
        table["estimate_s"] = np.nan
    return Plan(p.name, table, max(int(workers), 1))


def best_family(study) -> str | None:
    """Chapter 7's family when chapters 4-6 have stored grey-matter fits, else None."""
    stored = study.records(CHAPTER_CNN)
    if not any(r.maps == ["gm"] for r in stored):
        return None
    return study.best_cnn_family()[0]


# --- execution -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Task:
    """One unit as a worker runs it: where the study lives and which unit of which model."""

    profile: Profile
    cohort_dir: str
    results_dir: str
    model: GridModel
    repeat: int
    fold: int
    hash: str


@lru_cache(maxsize=4)
def _study(profile: Profile, cohort_dir: str, results_dir: str):
    """One open study per worker process (arrays stay in memory between its tasks)."""
    from .study import Study

    return Study.open(profile, cohort_dir, results_dir)


def run_task(task: Task) -> dict:
    """Run (or read back) one unit; the record is written atomically.

    On a Dask worker the fit runs in a child process with no other Python thread: Keras
    draws its default initializer seeds from Python's global `random`, which the
    worker's own threads also draw from, so a fit beside them would not repeat the
    serial run's weights.

    Returns
    -------
    dict
        `hash`, `computed` (False when the record was already stored) and `pid`.
    """
    if not _on_dask_worker():
        return _run_here(task)
    with _ONE_FIT:  # a worker with several threads still runs one fit at a time
        return _run_in_child(task)


def _run_in_child(task: Task) -> dict:
    global _CHILD
    if _CHILD is None or _CHILD.poll() is not None:
        _CHILD = subprocess.Popen([sys.executable, "-m", "mri3dcnn.grid"],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  preexec_fn=_die_with_parent)
    try:
        pickle.dump(task, _CHILD.stdin)
        _CHILD.stdin.flush()
        out = pickle.load(_CHILD.stdout)
    except (EOFError, OSError) as err:
        _CHILD = None
        raise RuntimeError(f"The fit process of unit {task.hash} ended early.") from err
    if isinstance(out, BaseException):
        raise out
    return out


#: the fitting process of this Dask worker, started on its first task
_CHILD = None
_ONE_FIT = threading.Lock()


def _serve() -> None:
    """The child's loop: tasks in on stdin, results (or the error) out on the original
    stdout; anything printed goes to stderr."""
    channel = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    while True:
        try:
            task = pickle.load(sys.stdin.buffer)
        except EOFError:
            return
        try:
            out = _run_here(task)
        except Exception as err:  # sent back, raised in the worker, retried by Dask
            out = err
        pickle.dump(out, channel)
        channel.flush()


def _on_dask_worker() -> bool:
    if "distributed" not in sys.modules:
        return False
    from distributed import get_worker

    try:
        get_worker()
    except ValueError:
        return False
    return True


def _die_with_parent() -> None:
    """A fit process ends with its worker (Linux), so a killed worker's unit is not
    finished twice."""
    import ctypes
    import signal

    if sys.platform.startswith("linux"):
        ctypes.CDLL("libc.so.6").prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _run_here(task: Task) -> dict:
    from .crossval import cross_validate

    study = _study(task.profile, task.cohort_dir, task.results_dir)
    model = build(study, task.model)
    key = next(k for k in study.unit_keys(model)
               if (k["repeat"], k["fold"]) == (task.repeat, task.fold))
    computed = study.store.get(key) is None
    cross_validate(study.store, model.spec, model.estimator, study.plan, study.context,
                   repeats=[task.repeat], folds=[task.fold])
    return {"hash": task.hash, "computed": computed, "pid": os.getpid()}


def tasks_for(study, models: Iterable[GridModel]) -> list[Task]:
    """The missing units of `models`, one task per distinct record hash."""
    out, seen = [], set()
    for m in models:
        for key in unit_keys(study, m):
            h = config_hash(key)
            if h in seen or study.store.get(key) is not None:
                continue
            seen.add(h)
            out.append(Task(study.profile, str(study.cohort.root),
                            str(study.store.root), m, int(key["repeat"]), int(key["fold"]), h))
    return out


def _progress(total: int, desc: str):
    from tqdm.std import tqdm

    return tqdm(total=total, desc=desc, unit="unit", disable=total == 0)


def _run_serial(tasks: list[Task], desc: str) -> list[dict]:
    out = []
    with _progress(len(tasks), desc) as bar:
        for t in tasks:
            out.append(run_task(t))
            bar.update()
    return out


def _run_dask(client, tasks: list[Task], desc: str, retries: int) -> list[dict]:
    from distributed import as_completed

    futures = [client.submit(run_task, t, key=f"unit-{t.hash}", retries=retries, pure=False)
               for t in tasks]
    out = []
    with _progress(len(tasks), desc) as bar:
        for fut in as_completed(futures):
            out.append(fut.result())
            bar.update()
    return out


def worker_env(threads: int) -> dict[str, str]:
    """The environment of a worker using `threads` cores: TensorFlow's intra-op threads
    (`MRI3DCNN_TF_THREADS`) and the BLAS / OpenMP pools. Results are bit-identical between
    processes with the same settings; other thread counts change the last bits of sums."""
    env = {"MRI3DCNN_TF_THREADS": str(threads), "OMP_NUM_THREADS": str(threads),
           "OPENBLAS_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
           "TF_ENABLE_ONEDNN_OPTS": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "1"),
           "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2")}
    for name in ("MRI3DCNN_HOME", "PYTHONPATH"):
        if name in os.environ:
            env[name] = os.environ[name]
    return env


def local_cluster(workers: int, threads: int | None = None):
    """A LocalCluster of `workers` processes, the cores split between them (`worker_env`)."""
    import dask
    from distributed import LocalCluster

    threads = threads or max((os.cpu_count() or 1) // workers, 1)
    with dask.config.set({"distributed.worker.daemon": False}):  # workers start fit processes
        return LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                            dashboard_address=":0" if _has_dashboard() else None,
                            env=worker_env(threads))


def _has_dashboard() -> bool:
    """Dask serves its dashboard only with bokeh importable (pinned in requirements.txt;
    an environment built otherwise may lack it)."""
    import importlib.util

    return importlib.util.find_spec("bokeh") is not None


def run_grid(profile: str | Profile = "quick", cohort_dir: Path | None = None,
             results_dir: Path | None = None, workers: int | None = None,
             scheduler: str | None = None, models: Iterable[GridModel] | None = None,
             retries: int = 2, client=None) -> dict:
    """Fit every missing unit of the profile's chapters and store it, so that the
    chapters then read their records and train nothing.

    Parameters
    ----------
    profile : str or Profile
    cohort_dir, results_dir : Path, optional
        Shared paths every worker reads and writes (defaults: the profile's).
    workers : int, optional
        Start a LocalCluster of this many worker processes. None and no `scheduler`:
        run serially in this process, with no Dask process started.
    scheduler : str, optional
        Address of a running Dask scheduler (e.g. one dask-jobqueue started).
    models : iterable of GridModel, optional
        Only these models (default: every model the grid runs, `chapter_models`).
    retries : int
        Reruns of a task that failed with an error (a task whose worker died is
        rescheduled by Dask without counting against these).
    client : distributed.Client, optional
        An existing client to use instead of `workers` / `scheduler`.

    Returns
    -------
    dict
        `computed` (units fitted now), `tasks` (the per-task results) and `dashboard`.
    """
    from .study import Study

    p = get_profile(profile)
    study = Study.open(p, cohort_dir, results_dir)
    chosen = list(chapter_models(p) if models is None else models)
    first = [m for m in chosen if m.grid == "grid" and m.kind != "late"]
    later = [m for m in chosen if m.grid == "after"]

    own = None
    if client is None and (workers or scheduler):
        from distributed import Client

        own = Client(scheduler) if scheduler else Client(local_cluster(int(workers)))
        client = own
    dashboard = None
    if client is not None:
        dashboard = client.dashboard_link if _has_dashboard() else None
        print(f"mri3dcnn grid: scheduler {client.scheduler.address}; dashboard "
              f"{dashboard or 'off (pip install bokeh to serve it)'}", flush=True)

    def execute(tasks: list[Task], desc: str) -> list[dict]:
        if client is None:
            return _run_serial(tasks, desc)
        return _run_dask(client, tasks, desc, retries)

    try:
        done = execute(tasks_for(study, first), f"grid {p.name}")
        if later:
            study = Study.open(p, cohort_dir, results_dir)
            family = best_family(study)
            if family is None:
                raise ValueError("Chapter 7 compares the best family of chapters 4-6 on grey "
                                 "matter: include their models in the grid.")
            resolved = [resolve_family(m, family) for m in later]
            done += execute(tasks_for(study, [m for m in resolved if m.kind != "late"]),
                            f"grid {p.name}, chapter 7 ({family})")
            for m in resolved:
                if m.kind == "late":
                    single = {mp: study.fit_cnn(family, (mp,)) for mp in m.maps}
                    study.cross_validate(study.late_fusion(family, single))
    finally:
        if own is not None:
            cluster = own.cluster
            own.close()
            if cluster is not None:
                cluster.close()
    return {"computed": sum(d["computed"] for d in done), "tasks": done,
            "dashboard": dashboard}


if __name__ == "__main__":
    _serve()
