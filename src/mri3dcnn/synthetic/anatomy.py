"""How one brain differs from the template: smooth deformations, regional volume variation,
smoothness, and the spatial shape of planted changes.

Maps are in MNI space as after spatial normalisation, which never aligns brains perfectly:
what is left is a smooth non-linear displacement of a few millimetres. It is drawn on a
dense control grid and interpolated with cubic splines, and every map of a subject (and its
brain mask) is resampled through the same field, so tissue boundaries move together.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy import ndimage

from ..space import Templates
from .effects import DEFAULT_TISSUE, Region


@dataclass(frozen=True)
class Anatomy:
    """Between-subject variation of anatomy and acquisition, in millimetres where a length."""

    #: root-mean-square length of the residual displacement inside the brain
    displacement_mm: float = 2.5
    #: spacing of the control grid the displacement is drawn on; local volume change (the
    #: Jacobian determinant) then stays, for 98 % of brain voxels, within
    #: 1 +- 4 x displacement / spacing (about 0.5-1.5 at the defaults), never folding
    control_spacing_mm: float = 20.0
    #: s.d. of the global scaling (residual head-size misfit after normalisation)
    scale_sd: float = 0.01
    #: s.d. of smooth log-volume variation of tissue (regional volumes differ between people)
    regional_sd: float = 0.08
    #: length scale (Gaussian sigma) of that variation
    regional_sigma_mm: float = 10.0
    #: s.d. of head size (modulated maps scale with it), before the sex difference
    head_sd: float = 0.04
    #: extra smoothness per subject: FWHM drawn uniformly from this range, added to the site's
    fwhm_range_mm: tuple[float, float] = (0.0, 3.0)

    def as_dict(self) -> dict:
        return asdict(self)


def displacement_field(shape: tuple[int, int, int], grid_mm: float, rng: np.random.Generator,
                       displacement_mm: float, control_spacing_mm: float,
                       brain: np.ndarray | None = None) -> np.ndarray:
    """A smooth random displacement (3, *shape) in voxels, with RMS length `displacement_mm`
    inside `brain` (everywhere if None).

    Control points every `control_spacing_mm` carry independent Gaussian displacements;
    cubic-spline interpolation makes the field smooth between them.
    """
    step = control_spacing_mm / grid_mm
    bases = [_bspline_basis(n, step) for n in shape]
    field = np.empty((3, *shape), np.float32)
    for a in range(3):
        c = rng.standard_normal(tuple(b.shape[1] for b in bases))
        for axis, b in enumerate(bases):  # separable: one small matrix product per axis
            c = np.moveaxis(np.tensordot(b, c, axes=(1, axis)), 0, axis)
        field[a] = c
    inside = np.ones(shape, bool) if brain is None else brain > 0
    rms = float(np.sqrt((field[:, inside] ** 2).sum(axis=0).mean()))
    return field * (displacement_mm / grid_mm / max(rms, 1e-8))


def _bspline_basis(n: int, step: float) -> np.ndarray:
    """Cubic B-spline weights (n voxels x control points) for control points every `step`
    voxels, with one extra control point beyond each end."""
    t = np.arange(n) / step + 1.0
    j = np.arange(int(np.ceil((n - 1) / step)) + 3)
    x = np.abs(t[:, None] - j[None, :])
    return np.where(x < 1, 2 / 3 - x**2 + x**3 / 2, np.where(x < 2, (2 - x) ** 3 / 6, 0.0))


def jacobian_determinant(field: np.ndarray) -> np.ndarray:
    """Determinant of the Jacobian of x -> x + field(x) (field in voxels): local volume
    change of the deformation; a value <= 0 would be a fold."""
    grads = np.stack([np.stack(np.gradient(field[a]), axis=0) for a in range(3)])
    jac = grads + np.eye(3)[:, :, None, None, None]
    return np.linalg.det(np.moveaxis(jac, (0, 1), (-2, -1)))


def warp(volumes: list[np.ndarray], field: np.ndarray, scale: float = 1.0,
         center_vox: np.ndarray | None = None) -> list[np.ndarray]:
    """Resample volumes through one displacement and a global scaling about `center_vox`."""
    shape = volumes[0].shape
    grid = np.meshgrid(*[np.arange(s, dtype=np.float32) for s in shape], indexing="ij")
    center = np.array(shape, np.float32) / 2.0 if center_vox is None else center_vox
    coords = [center[a] + (grid[a] - center[a]) / scale + field[a] for a in range(3)]
    return [ndimage.map_coordinates(v, coords, order=1, mode="constant", cval=0.0)
            for v in volumes]


def smooth_noise(rng: np.random.Generator, shape, sd: float, sigma_vox: float) -> np.ndarray:
    """Spatially correlated Gaussian noise with standard deviation `sd`."""
    n = ndimage.gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma_vox)
    return n * (sd / max(float(n.std()), 1e-8))


def smooth(volume: np.ndarray, fwhm_mm: float, grid_mm: float) -> np.ndarray:
    """Gaussian smoothing by `fwhm_mm` (no-op at 0)."""
    if fwhm_mm <= 0:
        return volume
    return ndimage.gaussian_filter(volume, fwhm_mm / (2.3548 * grid_mm))


def tissue_map(tpl: Templates, tissue: str) -> np.ndarray:
    """A template's tissue probability (the brain mask for 'brain')."""
    return {"gm": tpl.gm, "wm": tpl.wm, "csf": tpl.csf, "brain": tpl.brain}[tissue]


def region_profile(region: Region, xyz: np.ndarray, tpl: Templates) -> np.ndarray:
    """Where a planted change acts, and how strongly: uniform over the brain for a diffuse
    region, else a Gaussian bump (sigma radius/2) at each centre, cut at the radius, and
    weighted by the region's tissue when that is not the map's own (CSF for ventricles on
    MD, so the change stays in the ventricles rather than the tissue around them)."""
    if region.diffuse:
        return (tpl.brain > 0).astype(np.float32)
    prof = np.zeros(xyz.shape[:-1], np.float32)
    for c in region.centers:
        d = np.linalg.norm(xyz - np.asarray(c), axis=-1)
        bump = np.exp(-0.5 * (d / (region.radius_mm / 2.0)) ** 2)
        prof = np.maximum(prof, np.where(d <= region.radius_mm, bump, 0.0))
    if region.tissue != DEFAULT_TISSUE[region.map]:
        prof = prof * tissue_map(tpl, region.tissue)
    return prof.astype(np.float32)


def region_mask(region: Region, tpl: Templates, xyz: np.ndarray) -> np.ndarray:
    """Ground truth: the region's voxels (its spheres, or the whole brain, inside its tissue),
    never empty."""
    brain = tpl.brain > 0
    if region.diffuse:
        return brain & (tissue_map(tpl, region.tissue) > 0.5)
    dist = np.min([np.linalg.norm(xyz - np.asarray(c), axis=-1) for c in region.centers], axis=0)
    sphere = (dist <= region.radius_mm) & brain
    mask = sphere & (tissue_map(tpl, region.tissue) > 0.2)
    if not mask.any():  # coarse grids: keep at least the sphere itself
        mask = sphere
    if not mask.any():
        mask = np.zeros(dist.shape, bool)
        mask[np.unravel_index(np.argmin(np.where(brain, dist, np.inf)), dist.shape)] = True
    return mask
