"""One deterministic fit per (model, maps, fold, seed), selected without touching the test fold.

The study's notebooks kept the epoch with the best accuracy on the held-out fold itself,
which selects the model on its test data. Here the default protocol (`"inner"`) holds out
a stratified validation split of the *training* subjects for epoch selection and early
stopping; the held-out fold is used once, for prediction. `protocol="published"`
reproduces the original selection so the book can measure how much it inflates accuracy.
`protocol="traced"` fits as `"inner"` does (same seed, same validation split) but runs every
epoch and predicts the held-out fold after each one (`trace`): its record holds the honest
prediction (the epoch with the lowest validation loss), and its trace tells which epoch
the test fold would have chosen in the same run.

`recipe` names how the network is trained (`recipes.RECIPES`). `"original"` is the profile's
protocol with the family's own optimizer and loss, exactly as the study's chapters train;
any other recipe takes its optimizer and schedule, loss, augmentation, flips, early
stopping and seed ensemble from the recipe (its unset epochs, batch size and patience from
the fit's spec). `pretrain="age"` first trains the same network to tell older from younger
training subjects (no diagnosis used) and fine-tunes from its trunk.
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

from .config import PRECISIONS
from .crossval import PROTOCOLS, VARIANTS, Unit
from .preprocessing import Normaliser, augment_batch, model_inputs
from .recipes import RECIPES, Recipe, flip_lr, get_recipe

#: the recipe that trains as the study's chapters do (the family's own compile, the
#: profile's protocol); the default of every fit and key
DEFAULT_RECIPE = "original"
#: tasks a network may be pretrained on before it learns the diagnosis
PRETRAIN_TASKS = ("none", "age")

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
    # an ensemble builds one network per seed: TensorFlow's retracing notice is expected
    tf.get_logger().setLevel("ERROR")
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
    #: a name in `recipes.RECIPES`
    recipe: str = DEFAULT_RECIPE
    #: a task of `PRETRAIN_TASKS` trained before the diagnosis, "none" for none
    pretrain: str = "none"
    #: ensemble members trained: the first `ensemble` of the recipe's seeds (0: all)
    ensemble: int = 0
    #: the arithmetic, one of `config.PRECISIONS` (a Keras dtype policy)
    precision: str = "float32"

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be one of {PROTOCOLS}, got {self.protocol!r}.")
        if self.variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {self.variant!r}.")
        if self.recipe not in RECIPES:
            raise ValueError(f"recipe must be one of {sorted(RECIPES)}, got {self.recipe!r}.")
        if self.pretrain not in PRETRAIN_TASKS:
            raise ValueError(f"pretrain must be one of {PRETRAIN_TASKS}, got "
                             f"{self.pretrain!r}.")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got "
                             f"{self.precision!r}.")
        if self.ensemble < 0:
            raise ValueError(f"ensemble must be 0 (all the recipe's seeds) or more, got "
                             f"{self.ensemble}.")
        if self.recipe != DEFAULT_RECIPE and self.protocol != "inner":
            raise ValueError(f"Recipe {self.recipe!r} selects on the inner validation split; "
                             "use protocol='inner'.")

    def as_dict(self) -> dict:
        """The spec as its result key holds it; the default recipe, no pretraining and the
        recipe's whole ensemble are left out, so fits made before they existed keep their
        keys."""
        d = asdict(self)
        d["maps"] = list(self.maps)
        if self.recipe == DEFAULT_RECIPE:
            del d["recipe"]
        else:
            d["recipe"] = get_recipe(self.recipe).as_dict()
        for name, default in (("pretrain", "none"), ("ensemble", 0),
                              ("precision", "float32")):
            if d[name] == default:
                del d[name]
        return d


@dataclass(frozen=True)
class Training:
    """How one fit trains, resolved from its spec: the recipe's settings or, for the
    default recipe, the profile's protocol."""

    recipe: Recipe | None
    epochs: int
    batch_size: int
    patience: int
    augment: bool
    flips: bool
    seeds: tuple[int, ...]

    @classmethod
    def of(cls, spec: FitSpec) -> Training:
        if spec.recipe == DEFAULT_RECIPE:
            return cls(None, spec.epochs, spec.batch_size, spec.patience, spec.augment,
                       False, (spec.seed,))
        r = get_recipe(spec.recipe)
        return cls(r, r.epochs or spec.epochs, r.batch_size or spec.batch_size,
                   r.patience if r.patience is not None else spec.patience, r.augment,
                   r.flips, r.seeds(spec.seed)[:spec.ensemble or None])


def _batches(x: dict[str, np.ndarray], y: np.ndarray, spec: FitSpec, seed: int,
             grid_mm: float, training: Training | None = None, targets=None):
    """Keras PyDataset of (optionally augmented and flipped) shuffled training batches.

    Augmentation and flips draw from the batches' own generator, in batch order, so a
    seed fixes them; validation and test inputs never pass through here. `targets(idx)`
    gives the labels of a batch (default: the diagnosis, one-hot).
    """
    import keras

    training = training or Training.of(spec)
    if targets is None:
        def targets(idx):
            return np.eye(2, dtype=np.float32)[y[idx]]

    class Batches(keras.utils.PyDataset):
        def __init__(self):
            super().__init__(workers=1, use_multiprocessing=False)
            self.rng = np.random.default_rng(seed)
            self.order = self.rng.permutation(len(y))

        def __len__(self):
            return int(np.ceil(len(y) / training.batch_size))

        def __getitem__(self, k):
            idx = self.order[k * training.batch_size:(k + 1) * training.batch_size]
            xb = {m: v[idx] for m, v in x.items()}
            if training.augment:
                xb = augment_batch(xb, self.rng, grid_mm)
            if training.flips:
                xb = flip_lr(xb, self.rng)
            return model_inputs(xb, spec.maps, spec.fusion), targets(idx)

        def on_epoch_end(self):
            self.order = self.rng.permutation(len(y))

    return Batches()


def _callbacks(spec: FitSpec, progress_desc: str, training: Training | None = None) -> list:
    """Keep the best epoch's weights by the protocol's monitor; stop early under the inner
    protocol only (the published one ran every epoch: patience = epochs never triggers).
    A recipe other than the default brings its own early stopping (none if it runs every
    epoch). One progress bar per fit in a terminal, none in notebooks and logs."""
    import keras
    from tqdm.std import TqdmWarning, tqdm

    with warnings.catch_warnings():  # it imports tqdm.auto, which warns in a kernel without
        warnings.simplefilter("ignore", TqdmWarning)  # ipywidgets; the plain bar is used
        from tqdm.keras import TqdmCallback

    training = training or Training.of(spec)
    progress = TqdmCallback(epochs=training.epochs, verbose=0, tqdm_class=tqdm,
                            desc=progress_desc, leave=False, disable=not sys.stderr.isatty())
    if training.recipe is not None:
        return [*training.recipe.callbacks(training.patience), progress]
    published = spec.protocol == "published"
    every_epoch = spec.protocol in ("published", "traced")
    best = keras.callbacks.EarlyStopping(
        monitor="val_accuracy" if published else "val_loss",
        mode="max" if published else "min",
        patience=spec.epochs if every_epoch else spec.patience, restore_best_weights=True)
    return [best, progress]


def held_out_trace(inputs, batch_size: int = 32):
    """A Keras callback predicting `inputs` (the held-out fold) after every epoch.

    Its `probs` list holds one (subjects x 2) array per epoch, predicted with the batch
    size of the final prediction, so the epoch the fit keeps predicts exactly what the
    record stores. It only reads the model: the fit itself is unchanged.
    """
    import keras

    class HeldOutTrace(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.probs: list[np.ndarray] = []

        def on_epoch_end(self, epoch, logs=None):
            self.probs.append(self.model.predict(inputs, batch_size=batch_size, verbose=0))

    return HeldOutTrace()


def _build(spec: FitSpec, training: Training, grid: tuple[int, ...], n_fit: int):
    """The spec's network compiled for the fit: the family's own compile under the default
    recipe, else the recipe's optimizer, schedule (laid out over the fit) and loss; built
    under the spec's dtype policy (Keras wraps a float16 model's optimizer in loss
    scaling), which is restored afterwards."""
    import keras
    import tensorflow as tf

    from .models import build

    if spec.precision == "mixed_float16" and not tf.config.list_physical_devices("GPU"):
        raise ValueError("precision mixed_float16 needs a GPU: TensorFlow's CPU kernels have "
                         "no float16 3D max pooling. On a CPU use mixed_bfloat16, or float32.")
    steps = int(np.ceil(n_fit / training.batch_size))
    before = keras.config.dtype_policy()
    keras.config.set_dtype_policy(spec.precision)
    try:
        return build(spec.model, spec.maps, grid, fusion=spec.fusion,
                     published_wiring=spec.variant == "published-wiring",
                     recipe=training.recipe, steps_per_epoch=steps if training.recipe else None,
                     epochs=training.epochs if training.recipe else None)
    finally:
        keras.config.set_dtype_policy(before)


def _is_trunk(layer_name: str, maps: tuple[str, ...]) -> bool:
    """Trunk layers carry their branch's prefix (a map, or `stack` for channel fusion)."""
    return any(layer_name.startswith(f"{p}_") for p in (*maps, "stack"))


def pretrain_trunk(spec: FitSpec, x_fit: dict[str, np.ndarray], age_fit: np.ndarray,
                   x_val: dict[str, np.ndarray], age_val: np.ndarray,
                   grid_mm: float) -> dict[str, list[np.ndarray]]:
    """Trunk weights of the spec's network trained to tell older from younger subjects.

    The task needs no diagnosis: the target is whether a subject is older than the median
    age of the fold's fitting subjects, learnt with the fit's recipe, seed, augmentation
    and early stopping on the same inner validation split. Only the trunk is returned, so
    the diagnosis head starts fresh when it is fine-tuned.

    Parameters
    ----------
    spec : FitSpec
        The fit to be pretrained (its model, maps, fusion, recipe and seed).
    x_fit, x_val : dict of numpy.ndarray
        Normalised maps of the fitting and validation subjects.
    age_fit, age_val : numpy.ndarray
        Their ages.
    grid_mm : float
        The grid spacing (sizes the augmentation).

    Returns
    -------
    dict
        Layer name -> weights, for every trunk layer with weights.
    """
    import keras

    configure_tensorflow()
    training = Training.of(spec)
    cut = float(np.median(age_fit))
    older_fit = (np.asarray(age_fit) > cut).astype(int)
    older_val = (np.asarray(age_val) > cut).astype(int)
    keras.utils.set_random_seed(spec.seed)
    grid = next(iter(x_fit.values())).shape[1:]
    model = _build(spec, training, grid, len(older_fit))
    model.fit(_batches(x_fit, older_fit, spec, spec.seed, grid_mm, training),
              validation_data=(model_inputs(x_val, spec.maps, spec.fusion),
                               np.eye(2, dtype=np.float32)[older_val]),
              epochs=training.epochs, callbacks=_callbacks(spec, "pretrain", training),
              verbose=0, shuffle=False)
    weights = {layer.name: [np.array(w) for w in layer.get_weights()] for layer in model.layers
               if _is_trunk(layer.name, spec.maps) and layer.weights}
    keras.backend.clear_session()
    return weights


def fit_predict(spec: FitSpec, arrays: dict[str, np.ndarray], y: np.ndarray,
                ids: list[str], train_ids: list[str], test_ids: list[str],
                independent_ids: list[str], grid_mm: float, desc: str = "fit",
                ages: np.ndarray | None = None) -> dict:
    """Train one model on `train_ids` and predict `test_ids` and `independent_ids`.

    Under a recipe with several seeds, one network is trained per seed on the same inner
    split and their probabilities are averaged: the ensemble is one record, each member's
    model saved beside it. `ages` (one per subject in `ids`) are needed to pretrain.

    Returns what `ResultsStore.put` takes: predictions, history, info and the model saver,
    and under `protocol="traced"` the held-out fold's predictions after every epoch
    (`trace`: epoch, participant_id, y_true, score, pred).
    """
    import keras

    configure_tensorflow()
    training = Training.of(spec)
    pos = {s: i for i, s in enumerate(ids)}
    train = np.array([pos[s] for s in train_ids])
    test = np.array([pos[s] for s in test_ids])
    indep = np.array([pos[s] for s in independent_ids], dtype=int)
    if set(train) & (set(test) | set(indep)):
        raise ValueError("Training subjects overlap the test subjects.")

    if spec.variant == "shuffled-labels":
        y = y.copy()
        y[train] = np.random.default_rng(spec.seed).permutation(y[train])
    if spec.protocol in ("inner", "traced"):
        fit_idx, val_idx = train_test_split(train, test_size=spec.val_fraction,
                                            stratify=y[train], random_state=spec.seed)
    else:
        fit_idx, val_idx = train, test  # the published protocol: select on the test fold
    arrays = {m: arrays[m] for m in spec.maps}
    norm = Normaliser().fit(arrays, fit_idx)
    x_fit, x_val = norm.transform(arrays, fit_idx), norm.transform(arrays, val_idx)
    grid = next(iter(arrays.values())).shape[1:]

    pretrained, pretrain_s = None, 0.0
    if spec.pretrain == "age":
        if ages is None or len(ages) != len(ids):
            raise ValueError("Pretraining on age needs one age per subject: pass `ages` "
                             "(the participants table's `age` column).")
        t0 = time.perf_counter()
        pretrained = pretrain_trunk(spec, x_fit, np.asarray(ages)[fit_idx], x_val,
                                    np.asarray(ages)[val_idx], grid_mm)
        pretrain_s = time.perf_counter() - t0

    counts = np.bincount(y[fit_idx], minlength=2)
    class_weight = {c: len(fit_idx) / (2.0 * max(counts[c], 1)) for c in (0, 1)}
    parts = [(part, idx) for part, idx in (("cv", test), ("independent", indep)) if len(idx)]
    inputs = {part: model_inputs(norm.transform(arrays, idx), spec.maps, spec.fusion)
              for part, idx in parts}
    models, histories, members, probs = [], [], [], {part: [] for part, _ in parts}
    traced = spec.protocol == "traced" and len(test) > 0
    fit_s = predict_s = 0.0
    for k, seed in enumerate(training.seeds):
        keras.utils.set_random_seed(seed)
        model = _build(spec, training, grid, len(fit_idx))
        if pretrained is not None:
            for layer in model.layers:
                if layer.name in pretrained:
                    layer.set_weights(pretrained[layer.name])
        callbacks = _callbacks(spec, desc if len(training.seeds) == 1 else f"{desc} s{seed}",
                               training)
        if traced:  # one seed: a traced fit uses the default recipe (FitSpec checks)
            tracer = held_out_trace(inputs["cv"])
            callbacks.append(tracer)
        t0 = time.perf_counter()
        hist = model.fit(
            _batches(x_fit, y[fit_idx], spec, seed, grid_mm, training),
            validation_data=(model_inputs(x_val, spec.maps, spec.fusion),
                             np.eye(2, dtype=np.float32)[y[val_idx]]),
            epochs=training.epochs, class_weight=class_weight, callbacks=callbacks,
            verbose=0, shuffle=False,
        )
        fit_s += time.perf_counter() - t0
        t0 = time.perf_counter()
        for part, _ in parts:
            probs[part].append(model.predict(inputs[part], batch_size=32, verbose=0))
        predict_s += time.perf_counter() - t0
        history = pd.DataFrame(hist.history)
        history.insert(0, "epoch", np.arange(1, len(history) + 1))
        stop = next((c for c in callbacks if isinstance(c, keras.callbacks.EarlyStopping)),
                    None)
        members.append({"seed": int(seed), "epochs_run": int(len(history)),
                        "best_epoch": int(stop.best_epoch + 1 if stop else len(history))})
        histories.append(history if len(training.seeds) == 1
                         else history.assign(member=k))
        models.append(model)

    rows = []
    for part, idx in parts:
        score = _score(np.mean(probs[part], axis=0))
        for j, i in enumerate(idx):
            rows.append({"participant_id": ids[i], "set": part, "y_true": int(y[i]),
                         "score": float(score[j]), "pred": int(score[j] > 0.5)})
    trace = None
    if traced:
        trace = pd.DataFrame([
            {"epoch": e, "participant_id": ids[i], "y_true": int(y[i]),
             "score": float(s), "pred": int(s > 0.5)}
            for e, prob in enumerate(tracer.probs, start=1)
            for i, s in zip(test, _score(prob), strict=True)])

    def save_model(folder: Path) -> None:
        """The first member as `model.keras` (what saliency reads), the others beside it."""
        models[0].save(folder / "model.keras")
        for k, other in enumerate(models[1:], start=1):
            other.save(folder / f"model_member{k}.keras")
        norm.save(folder / "normaliser.npz")

    epochs_run = sum(m["epochs_run"] for m in members)
    info = {
        "best_epoch": members[0]["best_epoch"],
        "epochs_run": members[0]["epochs_run"],
        "n_params": int(models[0].count_params()),
        "n_train": int(len(fit_idx)),
        "n_val": int(len(val_idx)),
        "timings": {"fit_s": fit_s, "predict_s": predict_s,
                    "samples_per_s": len(fit_idx) * epochs_run / max(fit_s, 1e-9)},
    }
    if len(members) > 1:
        info["members"] = members
    if pretrained is not None:
        info["timings"]["pretrain_s"] = pretrain_s
    keras.backend.clear_session()
    out = {"predictions": pd.DataFrame(rows), "history": pd.concat(histories,
                                                                  ignore_index=True),
           "info": info, "artifacts": save_model}
    if trace is not None:
        out["trace"] = trace
    return out


def _score(prob: np.ndarray) -> np.ndarray:
    """The patient class's share of a (subjects x 2) probability array: the stored score."""
    return prob[:, 1] / np.maximum(prob.sum(axis=1), 1e-12)


@dataclass
class CNNFit:
    """A CNN configuration as an estimator for `crossval.cross_validate`: one
    `fit_predict` per unit on the given arrays."""

    spec: FitSpec
    arrays: dict[str, np.ndarray] = field(repr=False)
    y: np.ndarray = field(repr=False)
    ids: list[str] = field(repr=False)
    grid_mm: float = 3.0
    #: one age per subject, needed by `spec.pretrain == "age"`
    ages: np.ndarray | None = field(default=None, repr=False)

    def describe(self) -> dict:
        return {"spec": self.spec.as_dict()}

    def fit_predict(self, unit: Unit) -> dict:
        desc = f"{self.spec.model} {'+'.join(self.spec.maps)} r{unit.repeat} f{unit.fold}"
        return fit_predict(self.spec, self.arrays, self.y, self.ids, unit.train, unit.test,
                           unit.independent, self.grid_mm, desc=desc, ages=self.ages)
