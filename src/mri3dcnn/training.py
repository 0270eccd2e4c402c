"""One deterministic fit per (model, maps, fold, seed), selected without touching the test fold.

The study's notebooks kept the epoch with the best accuracy on the held-out fold itself,
which selects the model on its test data. Here the default protocol (`"inner"`) holds out
a stratified validation split of the *training* subjects for epoch selection and early
stopping; the held-out fold is used once, for prediction. `protocol="published"`
reproduces the original selection so the book can measure how much it inflates accuracy.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import ndimage
from sklearn.model_selection import train_test_split
from tqdm import tqdm

from .results import Record, ResultsStore
from .splits import iter_folds

PROTOCOLS = ("inner", "published")
_TF_CONFIGURED = False


def configure_tensorflow(intra_threads: int | None = None, inter_threads: int = 1) -> None:
    """Thread counts and op determinism, once per process, before TensorFlow runs an op.

    Two intra-op threads and one inter-op thread were as fast as TensorFlow's defaults on
    two cores and leave joblib workers free to split the machine.
    """
    global _TF_CONFIGURED
    if _TF_CONFIGURED:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    intra = intra_threads or int(os.environ.get("MRI3DCNN_TF_THREADS", os.cpu_count() or 1))
    try:
        tf.config.threading.set_intra_op_parallelism_threads(intra)
        tf.config.threading.set_inter_op_parallelism_threads(inter_threads)
    except RuntimeError:  # already initialised by an earlier op: keep its settings
        pass
    tf.config.experimental.enable_op_determinism()
    _TF_CONFIGURED = True


@dataclass(frozen=True)
class FitSpec:
    """Everything that decides one fit, hashed into its result key."""

    model: str
    maps: tuple[str, ...]
    epochs: int
    batch_size: int
    patience: int
    seed: int = 0
    protocol: str = "inner"
    fusion: str = "branch"
    augment: bool = False
    val_fraction: float = 0.2
    published_wiring: bool = False
    shuffle_labels: bool = False  # a null model for saliency sanity checks

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be one of {PROTOCOLS}, got {self.protocol!r}.")

    def as_dict(self) -> dict:
        d = asdict(self)
        d["maps"] = list(self.maps)
        return d


class Normaliser:
    """Voxel-wise z-scores with mean and spread fitted on training subjects only."""

    def fit(self, arrays: dict[str, np.ndarray], idx: np.ndarray) -> Normaliser:
        self.mean_ = {m: np.asarray(a[idx]).mean(axis=0) for m, a in arrays.items()}
        self.std_ = {}
        for m, a in arrays.items():
            sd = np.asarray(a[idx]).std(axis=0)
            floor = max(float(np.percentile(sd[sd > 0], 5)) if (sd > 0).any() else 1.0, 1e-6)
            self.std_[m] = np.maximum(sd, floor)
        return self

    def transform(self, arrays: dict[str, np.ndarray], idx: np.ndarray) -> dict[str, np.ndarray]:
        return {m: ((np.asarray(a[idx]) - self.mean_[m]) / self.std_[m]).astype(np.float32)
                for m, a in arrays.items()}

    def save(self, path: Path) -> None:
        np.savez_compressed(path, **{f"mean_{m}": v for m, v in self.mean_.items()},
                            **{f"std_{m}": v for m, v in self.std_.items()})

    @classmethod
    def load(cls, path: Path) -> Normaliser:
        """The normaliser a stored fit used, so saliency sees exactly the model's inputs."""
        z = np.load(path)
        norm = cls()
        norm.mean_ = {k[5:]: z[k] for k in z.files if k.startswith("mean_")}
        norm.std_ = {k[4:]: z[k] for k in z.files if k.startswith("std_")}
        return norm


def model_inputs(x: dict[str, np.ndarray], maps: tuple[str, ...], fusion: str):
    """Arrays in the layout the model expects: one input per map, or maps as channels."""
    if fusion == "channel" and len(maps) > 1:
        return np.stack([x[m] for m in maps], axis=-1)
    if len(maps) == 1:
        return x[maps[0]][..., None]
    return {m: x[m][..., None] for m in maps}


def random_affine(rng: np.random.Generator, shape, max_shift_vox: float, max_rot_deg: float,
                  zoom: tuple[float, float]):
    """Matrix and offset of one random shift + rotation (random pair of axes) + zoom."""
    angle = np.deg2rad(rng.uniform(-max_rot_deg, max_rot_deg))
    a, b = rng.choice(3, size=2, replace=False)
    rot = np.eye(3)
    rot[a, a] = rot[b, b] = np.cos(angle)
    rot[a, b], rot[b, a] = -np.sin(angle), np.sin(angle)
    scale = np.diag(1.0 / rng.uniform(*zoom, size=3))
    matrix = rot @ scale
    center = (np.asarray(shape) - 1) / 2.0
    shift = rng.integers(-int(max_shift_vox), int(max_shift_vox) + 1, size=3)
    offset = center - matrix @ center - shift
    return matrix, offset


def augment_batch(batch: dict[str, np.ndarray], rng: np.random.Generator, grid_mm: float
                  ) -> dict[str, np.ndarray]:
    """The original augmentation (shifts up to 10 voxels at 3 mm, rotations up to 20
    degrees, zoom 0.9-1.1) as one linear-interpolation resampling per volume instead of
    three cubic ones; the same transform is applied to every map of a subject."""
    out = {m: np.empty_like(v) for m, v in batch.items()}
    n = next(iter(batch.values())).shape[0]
    shape = next(iter(batch.values())).shape[1:]
    for i in range(n):
        matrix, offset = random_affine(rng, shape, 10 * 3.0 / grid_mm, 20.0, (0.9, 1.1))
        for m, v in batch.items():
            out[m][i] = ndimage.affine_transform(v[i], matrix, offset, order=1, mode="constant",
                                                 cval=float(v[i].min()))
    return out


def _batches(x: dict[str, np.ndarray], y: np.ndarray, spec: FitSpec, seed: int,
             grid_mm: float):
    """Keras PyDataset of (optionally augmented) shuffled training batches."""
    import keras

    class Batches(keras.utils.PyDataset):
        def __init__(self):
            super().__init__(workers=1, use_multiprocessing=False)
            self.rng = np.random.default_rng(seed)
            self.order = self.rng.permutation(len(y))

        def __len__(self):
            return int(np.ceil(len(y) / spec.batch_size))

        def __getitem__(self, k):
            idx = self.order[k * spec.batch_size:(k + 1) * spec.batch_size]
            xb = {m: v[idx] for m, v in x.items()}
            if spec.augment:
                xb = augment_batch(xb, self.rng, grid_mm)
            return model_inputs(xb, spec.maps, spec.fusion), np.eye(2, dtype=np.float32)[y[idx]]

        def on_epoch_end(self):
            self.order = self.rng.permutation(len(y))

    return Batches()


def _callbacks(spec: FitSpec, progress_desc: str):
    import keras

    monitor = "val_accuracy" if spec.protocol == "published" else "val_loss"

    class BestEpoch(keras.callbacks.Callback):
        """Keep the weights of the best epoch by `monitor`; stop after `patience` epochs
        without improvement (inner protocol only: the published one ran every epoch)."""

        def __init__(self):
            super().__init__()
            self.best, self.best_epoch, self.weights, self.wait = None, -1, None, 0

        def on_epoch_end(self, epoch, logs=None):
            value = float(logs[monitor])
            better = (self.best is None or (value > self.best if monitor == "val_accuracy"
                                            else value < self.best))
            if better:
                self.best, self.best_epoch, self.wait = value, epoch, 0
                self.weights = self.model.get_weights()
            else:
                self.wait += 1
                if spec.protocol == "inner" and self.wait >= spec.patience:
                    self.model.stop_training = True

        def on_train_end(self, logs=None):
            if self.weights is not None:
                self.model.set_weights(self.weights)

    class Progress(keras.callbacks.Callback):
        """One bar per fit in a terminal; silent in notebooks and logs."""

        def on_train_begin(self, logs=None):
            self.bar = tqdm(total=spec.epochs, desc=progress_desc, unit="epoch", leave=False,
                            disable=not sys.stderr.isatty())

        def on_epoch_end(self, epoch, logs=None):
            self.bar.set_postfix(loss=f"{logs['loss']:.3f}", val=f"{logs[monitor]:.3f}")
            self.bar.update(1)

        def on_train_end(self, logs=None):
            self.bar.close()

    return BestEpoch(), Progress()


def fit_predict(spec: FitSpec, arrays: dict[str, np.ndarray], y: np.ndarray,
                ids: list[str], train_ids: list[str], test_ids: list[str],
                independent_ids: list[str], grid_mm: float, desc: str = "fit") -> dict:
    """Train one model on `train_ids` and predict `test_ids` and `independent_ids`.

    Returns what `ResultsStore.put` takes: predictions, history, info and the model saver.
    """
    import keras

    from .models import build

    configure_tensorflow()
    pos = {s: i for i, s in enumerate(ids)}
    train = np.array([pos[s] for s in train_ids])
    test = np.array([pos[s] for s in test_ids])
    indep = np.array([pos[s] for s in independent_ids], dtype=int)
    if set(train) & (set(test) | set(indep)):
        raise ValueError("Training subjects overlap the test subjects.")

    if spec.shuffle_labels:
        y = y.copy()
        y[train] = np.random.default_rng(spec.seed).permutation(y[train])
    if spec.protocol == "inner":
        fit_idx, val_idx = train_test_split(train, test_size=spec.val_fraction,
                                            stratify=y[train], random_state=spec.seed)
    else:
        fit_idx, val_idx = train, test  # the published protocol: select on the test fold
    arrays = {m: arrays[m] for m in spec.maps}
    norm = Normaliser().fit(arrays, fit_idx)
    x_fit, x_val = norm.transform(arrays, fit_idx), norm.transform(arrays, val_idx)

    keras.utils.set_random_seed(spec.seed)
    grid = next(iter(arrays.values())).shape[1:]
    model = build(spec.model, spec.maps, grid, fusion=spec.fusion,
                  published_wiring=spec.published_wiring)
    counts = np.bincount(y[fit_idx], minlength=2)
    class_weight = {c: len(fit_idx) / (2.0 * max(counts[c], 1)) for c in (0, 1)}
    best, progress = _callbacks(spec, desc)
    t0 = time.perf_counter()
    hist = model.fit(
        _batches(x_fit, y[fit_idx], spec, spec.seed, grid_mm),
        validation_data=(model_inputs(x_val, spec.maps, spec.fusion),
                         np.eye(2, dtype=np.float32)[y[val_idx]]),
        epochs=spec.epochs, class_weight=class_weight, callbacks=[best, progress],
        verbose=0, shuffle=False,
    )
    fit_s = time.perf_counter() - t0

    rows = []
    t0 = time.perf_counter()
    for part, idx in (("cv", test), ("independent", indep)):
        if len(idx) == 0:
            continue
        prob = model.predict(model_inputs(norm.transform(arrays, idx), spec.maps, spec.fusion),
                             batch_size=32, verbose=0)
        score = prob[:, 1] / np.maximum(prob.sum(axis=1), 1e-12)
        for j, i in enumerate(idx):
            rows.append({"participant_id": ids[i], "set": part, "y_true": int(y[i]),
                         "score": float(score[j]), "pred": int(score[j] > 0.5)})
    predict_s = time.perf_counter() - t0
    history = pd.DataFrame(hist.history)
    history.insert(0, "epoch", np.arange(1, len(history) + 1))

    def save_model(folder: Path) -> None:
        model.save(folder / "model.keras")
        norm.save(folder / "normaliser.npz")

    info = {
        "best_epoch": int(best.best_epoch + 1),
        "epochs_run": int(len(history)),
        "n_params": int(model.count_params()),
        "n_train": int(len(fit_idx)),
        "n_val": int(len(val_idx)),
        "timings": {"fit_s": fit_s, "predict_s": predict_s,
                    "samples_per_s": len(fit_idx) * len(history) / max(fit_s, 1e-9)},
    }
    keras.backend.clear_session()
    return {"predictions": pd.DataFrame(rows), "history": history, "info": info,
            "artifacts": save_model}


def model_label(spec: FitSpec) -> str:
    """The name a fit is stored and reported under: the family, plus the fusion when the
    maps meet in another way than the original's branches."""
    if len(spec.maps) > 1 and spec.fusion != "branch":
        return f"{spec.model}-{spec.fusion}"
    if spec.published_wiring:
        return f"{spec.model}-published-wiring"
    if spec.shuffle_labels:
        return f"{spec.model}-shuffled-labels"
    return spec.model


def late_fusion(store: ResultsStore, chapter: str, single: dict[str, list[Record]],
                family: str, context: dict) -> list[Record]:
    """Average the probabilities of single-map models fold by fold (late fusion).

    `single` maps each map name to its records (same plan, same folds).
    """
    maps = sorted(single)
    by_fold: dict[tuple, list[Record]] = {}
    for m in maps:
        for rec in single[m]:
            by_fold.setdefault((rec.key["repeat"], rec.key["fold"]), []).append(rec)
    out = []
    for (r, fold), recs in sorted(by_fold.items()):
        if len(recs) != len(maps):
            raise ValueError(f"Late fusion: fold {fold} of repeat {r} lacks a map's model.")
        key = {"chapter": chapter, "model": f"{family}-late", "maps": maps, "fold": fold,
               "repeat": r, "seed": recs[0].key["seed"], "protocol": "inner",
               "config": {**context, "parts": [x.info["hash"] for x in recs]}}

        def compute(recs=recs):
            p = pd.concat([x.predictions for x in recs])
            avg = p.groupby(["participant_id", "set"], as_index=False).agg(
                y_true=("y_true", "first"), score=("score", "mean"))
            avg["pred"] = (avg["score"] > 0.5).astype(int)
            return {"predictions": avg[["participant_id", "set", "y_true", "score", "pred"]]}

        out.append(store.get_or_compute(key, compute))
    return out


def run_cv(store: ResultsStore, chapter: str, spec: FitSpec, arrays: dict[str, np.ndarray],
           cohort_ids: list[str], y: np.ndarray, plan: pd.DataFrame, context: dict,
           grid_mm: float, repeats: list[int] | None = None,
           folds: list[int] | None = None) -> list[Record]:
    """Every fold of the plan for one spec, each a resumable unit of the results store.

    `context` (cohort fingerprint, profile, grid) is part of every key, so records made on
    another cohort or grid are never reused.
    """
    out = []
    repeats = sorted(plan["repeat"].unique()) if repeats is None else repeats
    for r in repeats:
        for fold, train, test, indep in iter_folds(plan, int(r)):
            if folds is not None and fold not in folds:
                continue
            key = {"chapter": chapter, "model": model_label(spec), "maps": list(spec.maps),
                   "fold": fold, "repeat": int(r), "seed": spec.seed,
                   "protocol": spec.protocol,
                   "config": {**context, "spec": spec.as_dict(), "train": sorted(train)}}
            desc = f"{spec.model} {'+'.join(spec.maps)} r{r} f{fold}"
            out.append(store.get_or_compute(key, lambda t=train, s=test, i=indep, d=desc:
                                            fit_predict(spec, arrays, y, cohort_ids, t, s, i,
                                                        grid_mm, desc=d)))
    return out
