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
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from .crossval import PROTOCOLS, VARIANTS, Unit
from .preprocessing import Normaliser, augment_batch, model_inputs

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
    #: "shuffled-labels" trains a null model (saliency sanity checks); "published-wiring"
    #: builds the published code's Inception_resnet_2
    variant: str = "none"

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be one of {PROTOCOLS}, got {self.protocol!r}.")
        if self.variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {self.variant!r}.")

    def as_dict(self) -> dict:
        d = asdict(self)
        d["maps"] = list(self.maps)
        return d


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


def _callbacks(spec: FitSpec, progress_desc: str) -> list:
    """Keep the best epoch's weights by the protocol's monitor; stop early under the inner
    protocol only (the published one ran every epoch: patience = epochs never triggers).
    One progress bar per fit in a terminal, none in notebooks and logs."""
    import keras
    from tqdm.std import TqdmWarning, tqdm

    with warnings.catch_warnings():  # it imports tqdm.auto, which warns in a kernel without
        warnings.simplefilter("ignore", TqdmWarning)  # ipywidgets; the plain bar is used
        from tqdm.keras import TqdmCallback

    published = spec.protocol == "published"
    best = keras.callbacks.EarlyStopping(
        monitor="val_accuracy" if published else "val_loss",
        mode="max" if published else "min",
        patience=spec.epochs if published else spec.patience, restore_best_weights=True)
    progress = TqdmCallback(epochs=spec.epochs, verbose=0, tqdm_class=tqdm,
                            desc=progress_desc, leave=False, disable=not sys.stderr.isatty())
    return [best, progress]


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

    if spec.variant == "shuffled-labels":
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
                  published_wiring=spec.variant == "published-wiring")
    counts = np.bincount(y[fit_idx], minlength=2)
    class_weight = {c: len(fit_idx) / (2.0 * max(counts[c], 1)) for c in (0, 1)}
    callbacks = _callbacks(spec, desc)
    t0 = time.perf_counter()
    hist = model.fit(
        _batches(x_fit, y[fit_idx], spec, spec.seed, grid_mm),
        validation_data=(model_inputs(x_val, spec.maps, spec.fusion),
                         np.eye(2, dtype=np.float32)[y[val_idx]]),
        epochs=spec.epochs, class_weight=class_weight, callbacks=callbacks,
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
        "best_epoch": int(callbacks[0].best_epoch + 1),
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


@dataclass
class CNNFit:
    """A CNN configuration as an estimator for `crossval.cross_validate`: one
    `fit_predict` per unit on the given arrays."""

    spec: FitSpec
    arrays: dict[str, np.ndarray] = field(repr=False)
    y: np.ndarray = field(repr=False)
    ids: list[str] = field(repr=False)
    grid_mm: float = 3.0

    def describe(self) -> dict:
        return {"spec": self.spec.as_dict()}

    def fit_predict(self, unit: Unit) -> dict:
        desc = f"{self.spec.model} {'+'.join(self.spec.maps)} r{unit.repeat} f{unit.fold}"
        return fit_predict(self.spec, self.arrays, self.y, self.ids, unit.train, unit.test,
                           unit.independent, self.grid_mm, desc=desc)
