"""Saliency for trained 3D CNNs, scored against the truth where it is known.

Five methods on any model, single- or multi-input, written with `tf.GradientTape`:
vanilla gradient, SmoothGrad, integrated gradients, 3D Grad-CAM (last convolution of each
branch) and occlusion (a sliding cube). Every method returns one map per input map, on the
study grid, as float32 arrays of shape (n_subjects, X, Y, Z).

Inputs are the model's own normalised inputs (z-scores against the training subjects), so
integrated gradients' zero baseline is the average training subject.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
from scipy import ndimage, stats
from sklearn.metrics import roc_auc_score

from .atomic import atomic_directory
from .derivatives import describe, label, sidecar_of, write_image
from .maps import derivative_path, map_info
from .space import SPACE
from .volumes import to_image

METHODS = ("gradient", "smoothgrad", "integrated_gradients", "gradcam", "occlusion")
#: A method passes the sanity checks (Adebayo et al. 2018) when its maps' rank correlation
#: with the trained model's maps stays below this, both once every layer is randomised and
#: for a model trained on shuffled labels. Correlations above it mean the maps mostly
#: show the input, not what the model learned.
SANITY_MAX_CORRELATION = 0.5
#: the atlas regions by mean saliency in which a planted region should appear
TOP_REGIONS = 5


def _as_list(model, x: dict[str, np.ndarray]) -> list[np.ndarray]:
    """Model inputs in the model's input order, each with a channel axis."""
    names = [i.name.split(":")[0] for i in model.inputs]
    if len(names) == 1 and names[0] not in x and len(x) > 1:  # channel fusion
        return [np.stack([x[m] for m in sorted(x, key=names[0].split("_").index)], -1)]
    return [x[n][..., None] if x[n].ndim == 4 else x[n] for n in names]


def _split(model, grads: list[np.ndarray], maps: list[str]) -> dict[str, np.ndarray]:
    """Per-map saliency from per-input gradients (channels of a stacked input split)."""
    if len(model.inputs) == 1 and len(maps) > 1:
        return {m: grads[0][..., k] for k, m in enumerate(maps)}
    return {m: g[..., 0] for m, g in zip(maps, grads, strict=True)}


def _score(model, inputs, target: int):
    out = model(inputs if len(inputs) > 1 else inputs[0], training=False)
    return out[:, target]


def _gradients(model, inputs: list[np.ndarray], target: int, batch: int = 8) -> list[np.ndarray]:
    import tensorflow as tf

    outs = [np.empty_like(a) for a in inputs]
    for s in range(0, len(inputs[0]), batch):
        xs = [tf.convert_to_tensor(a[s:s + batch]) for a in inputs]
        with tf.GradientTape() as tape:
            tape.watch(xs)
            score = _score(model, xs, target)
        for o, g in zip(outs, tape.gradient(score, xs), strict=True):
            o[s:s + batch] = g.numpy()
    return outs


def gradient(model, x: dict[str, np.ndarray], maps: list[str], target: int = 1) -> dict:
    """d(patient score)/d(input): where a small change would move the decision most."""
    return _split(model, _gradients(model, _as_list(model, x), target), maps)


def smoothgrad(model, x: dict[str, np.ndarray], maps: list[str], target: int = 1,
               n: int = 16, noise: float = 0.15, seed: int = 0) -> dict:
    """Gradients averaged over noisy copies of the input (Smilkov et al. 2017)."""
    rng = np.random.default_rng(seed)
    inputs = _as_list(model, x)
    total = [np.zeros_like(a) for a in inputs]
    for _ in range(n):
        noisy = [a + rng.normal(0, noise * float(a.max() - a.min()), a.shape).astype(a.dtype)
                 for a in inputs]
        for t, g in zip(total, _gradients(model, noisy, target), strict=True):
            t += g / n
    return _split(model, total, maps)


def integrated_gradients(model, x: dict[str, np.ndarray], maps: list[str], target: int = 1,
                         steps: int = 16) -> dict:
    """(x - baseline) times gradients averaged along the straight path from a zero baseline
    (the average training subject) to x (Sundararajan et al. 2017)."""
    inputs = _as_list(model, x)
    total = [np.zeros_like(a) for a in inputs]
    for alpha in (np.arange(steps) + 0.5) / steps:
        for t, g in zip(total, _gradients(model, [alpha * a for a in inputs], target),
                        strict=True):
            t += g / steps
    return _split(model, [t * a for t, a in zip(total, inputs, strict=True)], maps)


def _last_convs(model) -> list:
    """The last Conv3D layer of each input branch (one for channel fusion)."""
    convs = [layer for layer in model.layers if type(layer).__name__ == "Conv3D"]
    branches: dict[str, object] = {}
    for layer in convs:
        branches[layer.name.split("_")[0]] = layer  # later layers overwrite earlier ones
    return list(branches.values())


def gradcam(model, x: dict[str, np.ndarray], maps: list[str], target: int = 1,
            batch: int = 8) -> dict:
    """3D Grad-CAM (Selvaraju et al. 2017) on each branch's last convolution, upsampled
    linearly to the input grid."""
    import keras
    import tensorflow as tf

    layers = _last_convs(model)
    probe = keras.Model(model.inputs, [la.output for la in layers] + [model.output])
    inputs = _as_list(model, x)
    grid = inputs[0].shape[1:4]
    cams = [np.empty((len(inputs[0]), *grid), np.float32) for _ in layers]
    for s in range(0, len(inputs[0]), batch):
        xs = [tf.convert_to_tensor(a[s:s + batch]) for a in inputs]
        with tf.GradientTape() as tape:
            outs = probe(xs if len(xs) > 1 else xs[0], training=False)
            acts, score = outs[:-1], outs[-1][:, target]
        grads = tape.gradient(score, acts)
        for k, (a, g) in enumerate(zip(acts, grads, strict=True)):
            w = tf.reduce_mean(g, axis=(1, 2, 3), keepdims=True)
            cam = tf.nn.relu(tf.reduce_sum(w * a, axis=-1)).numpy()
            for j, c in enumerate(cam):
                cams[k][s + j] = ndimage.zoom(c, np.array(grid) / np.array(c.shape), order=1,
                                              grid_mode=True, mode="nearest")
    if len(model.inputs) == 1 and len(maps) > 1:
        return {m: cams[0] for m in maps}  # one branch sees all maps: one map for all
    names = [la.name.split("_")[0] for la in layers]
    return {m: cams[names.index(m)] for m in maps}


def occlusion(model, x: dict[str, np.ndarray], maps: list[str], target: int = 1,
              cube: int = 3, mask: np.ndarray | None = None, batch: int = 64) -> dict:
    """Drop in the patient score when a cube of one map is set to the training mean (0),
    cube by cube (Zeiler and Fergus 2014); cubes outside `mask` are skipped."""
    inputs = _as_list(model, x)
    grid = inputs[0].shape[1:4]
    starts = [(i, j, k) for i in range(0, grid[0], cube) for j in range(0, grid[1], cube)
              for k in range(0, grid[2], cube)
              if mask is None or mask[i:i + cube, j:j + cube, k:k + cube].any()]
    out = {m: np.zeros((len(inputs[0]), *grid), np.float32) for m in maps}
    stacked = len(model.inputs) == 1 and len(maps) > 1
    for n in range(len(inputs[0])):
        one = [a[n:n + 1] for a in inputs]
        base = float(np.asarray(_score(model, one, target))[0])
        for mi, m in enumerate(maps):
            for s in range(0, len(starts), batch):
                chunk = starts[s:s + batch]
                occluded = [np.repeat(a, len(chunk), axis=0) for a in one]
                src = occluded[0] if stacked else occluded[mi]
                for b, (i, j, k) in enumerate(chunk):
                    if stacked:
                        src[b, i:i + cube, j:j + cube, k:k + cube, mi] = 0.0
                    else:
                        src[b, i:i + cube, j:j + cube, k:k + cube] = 0.0
                drop = base - np.asarray(_score(model, occluded, target))
                for b, (i, j, k) in enumerate(chunk):
                    out[m][n, i:i + cube, j:j + cube, k:k + cube] = drop[b]
    return out


def compute(method: str, model, x: dict[str, np.ndarray], maps: list[str],
            mask: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """One method by name."""
    funcs: dict[str, Callable] = {
        "gradient": gradient, "smoothgrad": smoothgrad,
        "integrated_gradients": integrated_gradients, "gradcam": gradcam,
    }
    if method == "occlusion":
        return occlusion(model, x, maps, mask=mask)
    if method not in funcs:
        raise ValueError(f"Unknown saliency method {method!r}; choose one of {METHODS}.")
    return funcs[method](model, x, maps)


def load_fit(record):
    """A stored fit's model and normaliser."""
    from .models import load_model
    from .preprocessing import Normaliser

    path = Path(record.path)
    for f in ("model.keras", "normaliser.npz"):
        if not (path / f).exists():
            raise FileNotFoundError(f"{path / f} is missing; re-run the fit (delete {path}).")
    return load_model(path / "model.keras"), Normaliser.load(path / "normaliser.npz")


#: what each method's values are (for the sidecars of the maps written): the inputs are
#: the fold's z-scores against its training subjects, the target the patient score
METHOD_VALUES = {
    "gradient": ("d(patient score)/d(input): how fast the score moves as the voxel's "
                 "z-score moves", "patient score per z-unit"),
    "smoothgrad": ("the gradient averaged over noisy copies of the input",
                   "patient score per z-unit"),
    "integrated_gradients": ("the voxel's share of the score's change from the average "
                             "training subject (zero input) to this subject",
                             "patient score"),
    "gradcam": ("ReLU of the last convolution's activations weighted by their mean "
                "gradient, upsampled linearly; non-negative", "arbitrary"),
    "occlusion": ("the drop in the patient score when the cube around the voxel is set to "
                  "the training mean", "patient score"),
}


class _Dataset:
    """The BIDS-derivatives dataset of one model's saliency maps, built in `root`: each
    explained subject's signed map in its folder (averaged over the repeats that held it
    out), the group maps at the root, a sidecar beside each."""

    def __init__(self, root: Path, grid_mm: float, records, mask: np.ndarray):
        from .crossval import display_name

        self.root, self.grid_mm, self.mask = root, grid_mm, mask
        self.model = display_name(records[0].key)
        self.fusion = records[0].key["fusion"]

    def _meta(self, method: str, map_name: str, what: str, recs: list) -> dict:
        values, units = METHOD_VALUES[method]
        return {"Description": what, "Method": method, "Map": map_name,
                "Model": self.model, "Fusion": self.fusion, "Values": values, "Units": units,
                "Target": "patient score p(patient) / (p(patient) + p(control))",
                "Records": recs}

    def subject(self, sub: str, method: str, map_name: str, volume: np.ndarray,
                rec) -> None:
        rel = derivative_path(sub, f"desc-{label(method, map_name.upper())}_saliency.nii.gz",
                              self.grid_mm, SPACE, map_info(map_name).datatype)
        this = {"Repeat": int(rec.key["repeat"]), "Fold": int(rec.key["fold"]),
                "Record": rec.info.get("hash", rec.path.name)}
        volume = volume * self.mask
        recs = [this]
        side = sidecar_of(self.root / rel)
        if side.exists():  # held out in an earlier repeat too: the running mean
            recs = [*json.loads(side.read_text())["Records"], this]
            old = np.asarray(nib.load(self.root / rel).dataobj, dtype=np.float32)
            volume = old + (volume - old) / len(recs)
        write_image(self.root, rel, to_image(volume, self.grid_mm), self._meta(
            method, map_name, f"{method} saliency of {self.model} for {sub}, a held-out "
            "patient it classified correctly" + (", averaged over the repeats that held it "
                                                 "out" if len(recs) > 1 else ""), recs))

    def group(self, method: str, map_name: str, volume: np.ndarray, recs: list[dict],
              n_subjects: int) -> None:
        rel = derivative_path(None, f"desc-{label(method, map_name.upper())}_saliency.nii.gz",
                              self.grid_mm, SPACE)
        meta = self._meta(method, map_name, f"group {method} saliency of {self.model}: mean "
                          "absolute saliency over each fold's correctly classified held-out "
                          "patients, averaged over folds", recs)
        meta["Values"] = f"mean over subjects of the absolute value of: {meta['Values']}"
        meta["SubjectsExplained"] = n_subjects
        write_image(self.root, rel, to_image(volume, self.grid_mm), meta)


def group_maps(records, arrays: dict[str, np.ndarray], ids: list[str], methods,
               mask: np.ndarray, max_subjects: int = 10, save_dir: Path | None = None,
               grid_mm: float | None = None, occlusion_subjects: int | None = None,
               sources: tuple = ()) -> dict[str, dict[str, np.ndarray]]:
    """Mean |saliency| over the correctly classified patients of each fold's held-out
    subjects, then averaged over folds.

    Parameters
    ----------
    records : list of Record
        Stored fits of one model, one per fold (each with its model and normaliser).
    arrays : dict
        The maps on the study grid, all subjects.
    ids : list of str
        Subject order of `arrays`.
    methods : list of str
        Names from `METHODS`.
    mask : numpy.ndarray
        The brain mask; saliency outside it is zeroed.
    max_subjects : int
        Patients explained per fold.
    save_dir : Path, optional
        With `grid_mm`, written (replaced) as a BIDS-derivatives dataset: every explained
        subject's map in ``sub-<id>/anat/`` (``dwi/`` for FA and MD), the group maps at the
        root, named ``[sub-<id>_]space-<space>_res-<grid>_desc-<method><MAP>_saliency`` with
        a JSON sidecar each (`derivatives.check_dataset` checks it).
    grid_mm : float, optional
    occlusion_subjects : int, optional
        Occlusion, a forward pass per cube, may explain fewer subjects.
    sources : tuple of path
        The datasets the maps come from (cohort, results store), for the description.

    Returns
    -------
    dict
        {method: {map: group volume}}.
    """
    from contextlib import nullcontext


    pos = {s: i for i, s in enumerate(ids)}
    sums: dict[str, dict[str, np.ndarray]] = {}
    used: list[dict] = []
    explained: set[str] = set()
    n_folds = 0
    save = save_dir is not None and grid_mm is not None and records
    with atomic_directory(save_dir) if save else nullcontext() as tmp:
        out_ds = _Dataset(tmp, grid_mm, records, mask) if save else None
        for rec in records:
            maps = rec.maps
            p = rec.predictions
            hit = p[(p.set == "cv") & (p.y_true == 1) & (p.pred == 1)]
            chosen = [pos[s] for s in hit.participant_id[:max_subjects]]
            if not chosen:
                continue
            model, norm = load_fit(rec)
            x = norm.transform({m: arrays[m] for m in maps}, np.array(chosen))
            n_folds += 1
            used.append({"Repeat": int(rec.key["repeat"]), "Fold": int(rec.key["fold"]),
                         "Record": rec.info.get("hash", rec.path.name)})
            for method in methods:
                n = occlusion_subjects if method == "occlusion" and occlusion_subjects else None
                sal = compute(method, model, {m: v[:n] for m, v in x.items()}, maps, mask)
                for m, v in sal.items():
                    for j, sub in enumerate(hit.participant_id[:len(v)]):
                        explained.add(sub)
                        if out_ds is not None:
                            out_ds.subject(sub, method, m, v[j], rec)
                    acc = sums.setdefault(method, {}).setdefault(m, np.zeros(v.shape[1:]))
                    acc += np.abs(v).mean(axis=0) * mask
        out = {meth: {m: (v / max(n_folds, 1)).astype(np.float32) for m, v in d.items()}
               for meth, d in sums.items()}
        if out_ds is not None:
            for meth, d in out.items():
                for m, v in d.items():
                    out_ds.group(meth, m, v, used, len(explained))
            describe(tmp, f"Saliency of {out_ds.model} on {'+'.join(records[0].maps)}",
                     f"saliency methods {', '.join(methods)} on the stored fits of "
                     f"{out_ds.model}", sources)
    return out


def localization(saliency: np.ndarray, truth: np.ndarray, brain: np.ndarray,
                 top: float = 0.01) -> dict[str, float]:
    """AUC of saliency ranking brain voxels against the planted mask, and the share of the
    top `top` fraction of voxels that fall inside it (chance: the mask's share)."""
    s, t = saliency[brain], truth[brain]
    k = max(1, int(round(top * len(s))))
    topk = np.argsort(s)[::-1][:k]
    return {"auc": float(roc_auc_score(t, s)), "top1pct_inside": float(t[topk].mean()),
            "chance_share": float(t.mean())}


def planted_in_top_regions(saliency: np.ndarray, planted: dict[str, np.ndarray],
                           grid_mm: float, top: int = 5) -> pd.DataFrame:
    """For each planted region: its main atlas region and whether that is among the `top`
    atlas regions by mean saliency."""
    from .atlas import aal_on_grid, region_table

    labels, table = aal_on_grid(grid_mm)
    ranked = region_table(saliency, grid_mm, top=top)["region"].tolist()
    names = dict(zip(table["index"], table["name"], strict=True))
    rows = []
    for name, mask in planted.items():
        lab = labels[mask & (labels > 0)]
        main = names.get(int(stats.mode(lab, keepdims=False).mode), "none") if lab.size else "none"
        rows.append({"planted": name, "atlas_region": main, f"in_top{top}": main in ranked})
    return pd.DataFrame(rows)


def rank_correlation(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    """Spearman correlation of two saliency maps' absolute values inside the mask."""
    return float(stats.spearmanr(np.abs(a[mask]), np.abs(b[mask])).statistic)


def randomisation_check(model, x: dict[str, np.ndarray], maps: list[str], methods,
                        mask: np.ndarray, seed: int = 0, n_steps: int = 6) -> pd.DataFrame:
    """Cascading model randomisation (Adebayo et al. 2018): shuffle the weights of layers
    from the output down, one more each step, and correlate each method's saliency with
    the trained model's at `n_steps` depths (the last: every layer). A method whose maps
    barely change explains the input, not the model.

    Parameters
    ----------
    model : keras.Model
        A trained model; its weights are restored afterwards.
    x : dict
        Normalised inputs of the subjects explained, per map.
    maps, methods : list of str
    mask : numpy.ndarray
    seed : int
    n_steps : int
        Depths at which maps are compared.

    Returns
    -------
    pandas.DataFrame
        `method`, `layers_randomised`, `top_layer`, `rank_correlation`.
    """
    ref = {meth: compute(meth, model, x, maps, mask) for meth in methods}
    trained = model.get_weights()
    rng = np.random.default_rng(seed)
    weighted = [la for la in model.layers if la.weights][::-1]
    checkpoints = set(np.unique(np.linspace(1, len(weighted), n_steps).round().astype(int)))
    rows = []
    try:  # randomise in place, restore the trained weights afterwards
        for depth, layer in enumerate(weighted, start=1):
            layer.set_weights([rng.permutation(w.ravel()).reshape(w.shape) if w.ndim > 1
                               else np.zeros_like(w) for w in layer.get_weights()])
            if depth not in checkpoints:
                continue
            for meth in methods:
                s = compute(meth, model, x, maps, mask)
                r = np.nanmean([rank_correlation(ref[meth][m][i], s[m][i], mask)
                                for m in maps for i in range(len(s[m]))])
                rows.append({"method": meth, "layers_randomised": depth,
                             "top_layer": layer.name, "rank_correlation": float(r)})
    finally:
        model.set_weights(trained)
    return pd.DataFrame(rows)


def localisation_table(group: dict[str, dict[str, dict[str, np.ndarray]]],
                       planted: dict[str, np.ndarray], brain: np.ndarray,
                       grid_mm: float, map_name: str = "gm") -> pd.DataFrame:
    """Per family and method: `localization` against the union of the planted regions,
    and the share of planted regions whose main atlas region is among the top ones.

    Parameters
    ----------
    group : dict
        {family: {method: {map: group saliency volume}}}, as `group_maps` per family.
    planted : dict
        {region name: boolean mask} of the map explained.
    brain : numpy.ndarray
        The brain mask.
    grid_mm : float
        The study grid's voxel size.

    Returns
    -------
    pandas.DataFrame
        One row per family and method: `auc`, `top1pct_inside`, `chance_share`,
        `planted_in_top5_regions`; empty when nothing is planted.
    """
    if not planted:
        return pd.DataFrame()
    union = np.any(list(planted.values()), axis=0)
    rows = []
    for fam, by_method in group.items():
        for meth, maps in by_method.items():
            top = planted_in_top_regions(maps[map_name], planted, grid_mm, top=TOP_REGIONS)
            rows.append({"family": fam, "method": meth,
                         **localization(maps[map_name], union, brain),
                         f"planted_in_top{TOP_REGIONS}_regions":
                         float(top[f"in_top{TOP_REGIONS}"].mean())})
    return pd.DataFrame(rows)


def per_map_localisation(group: dict[str, dict[str, np.ndarray]],
                         planted: dict[str, dict[str, np.ndarray]],
                         brain: np.ndarray) -> pd.DataFrame:
    """A multi-input model's group maps, each scored against its own map's planted
    regions: one row per method and map with a planted region."""
    return pd.DataFrame([{"method": meth, "map": m,
                          **localization(v, np.any(list(planted[m].values()), axis=0), brain)}
                         for meth, by_map in group.items() for m, v in by_map.items()
                         if m in planted])


def sanity_checks(model, x: dict[str, np.ndarray], null_model, x_null: dict[str, np.ndarray],
                  maps: list[str], methods, brain: np.ndarray,
                  randomised: pd.DataFrame) -> pd.DataFrame:
    """Both sanity checks per method, with the verdict of `SANITY_MAX_CORRELATION`.

    Parameters
    ----------
    model, null_model : keras.Model
        The trained model and one trained on shuffled labels (same fold).
    x, x_null : dict
        The same subjects, normalised for each model.
    maps : list of str
    methods : list of str
    brain : numpy.ndarray
    randomised : pandas.DataFrame
        `randomisation_check` of `model` on `x`; its deepest step is used.

    Returns
    -------
    pandas.DataFrame
        `method`, `r vs all layers randomised`, `r vs shuffled-label model`, `passes`.
    """
    final = randomised[randomised.layers_randomised == randomised.layers_randomised.max()]
    rows = []
    for meth in methods:
        a = compute(meth, model, x, maps, brain)
        b = compute(meth, null_model, x_null, maps, brain)
        r_null = float(np.mean([rank_correlation(a[m][i], b[m][i], brain)
                                for m in maps for i in range(len(a[m]))]))
        r_rand = float(final.loc[final.method == meth, "rank_correlation"].iloc[0])
        rows.append({"method": meth, "r vs all layers randomised": r_rand,
                     "r vs shuffled-label model": r_null,
                     "passes": passes_sanity(r_rand, r_null)})
    return pd.DataFrame(rows)


def passes_sanity(*correlations: float) -> bool:
    """True when every correlation with a model that learned nothing stays below
    `SANITY_MAX_CORRELATION`."""
    return bool(all(r < SANITY_MAX_CORRELATION for r in correlations))
