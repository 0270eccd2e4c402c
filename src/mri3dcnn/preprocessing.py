"""What a model sees: normalisation fitted on training subjects, augmentation, input layout.

Everything here is fitted on, or applied to, one fold's subjects at a time; saliency
reuses the stored `Normaliser` so it explains exactly the inputs the model was trained on.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy import ndimage


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

    def as_layer(self, map_name: str, name: str | None = None):
        """The normalisation of one map as a Keras layer (`models.export_layers.Standardise`)
        that gives the same float32 numbers as `transform`, for a self-contained model."""
        from .models.export_layers import Standardise

        mean, std = np.asarray(self.mean_[map_name]), np.asarray(self.std_[map_name])
        precision = np.result_type(mean, std, np.float32)
        layer = Standardise(mean.shape, precision=precision.name,
                            name=name or f"standardise_{map_name}")
        layer.set_weights([mean.astype(precision)[..., None], std.astype(precision)[..., None]])
        return layer

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
