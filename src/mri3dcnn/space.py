"""The study's space: one MNI grid, the templates on it, resampling onto it, the brain mask.

Real and synthetic cohorts meet here: a real map is resampled onto the grid the synthetic
cohort is generated on, and both are masked by the same MNI152 brain mask, so every model
sees the same voxels whichever cohort it reads.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from functools import lru_cache

import nibabel as nib
import numpy as np

#: The SPM 3 mm MNI box of the original study: 61 x 73 x 61 voxels at 3 mm.
STUDY_BOX_ORIGIN = (-90.0, -126.0, -72.0)
STUDY_BOX_EXTENT = (180.0, 216.0, 180.0)
#: the template space every map is in (nilearn's bundled MNI152 2009a)
SPACE = "MNI152NLin2009aSym"


def study_grid(grid_mm: float) -> tuple[np.ndarray, tuple[int, int, int]]:
    """Affine and shape of the study grid: the SPM MNI box sampled every `grid_mm`.

    At 3 mm this is the original study's 61 x 73 x 61 grid.
    """
    if grid_mm <= 0:
        raise ValueError(f"grid_mm must be positive, got {grid_mm}.")
    affine = np.diag([grid_mm, grid_mm, grid_mm, 1.0])
    affine[:3, 3] = STUDY_BOX_ORIGIN
    shape = tuple(int(np.floor(e / grid_mm + 1e-6)) + 1 for e in STUDY_BOX_EXTENT)
    return affine, shape  # type: ignore[return-value]


def to_grid(img: nib.Nifti1Image, grid_mm: float, interpolation: str = "continuous") -> np.ndarray:
    """Resample an image onto the study grid; a no-op when it is already there."""
    affine, shape = study_grid(grid_mm)
    if img.shape == tuple(shape) and np.allclose(img.affine, affine, atol=1e-3):
        return np.asarray(img.dataobj, dtype=np.float32)
    from nilearn import image

    with warnings.catch_warnings():  # masks are resampled linearly, then thresholded
        warnings.simplefilter("ignore", UserWarning)
        out = image.resample_img(img, target_affine=affine, target_shape=shape,
                                 interpolation=interpolation, force_resample=True,
                                 copy_header=True)
    return np.asarray(out.get_fdata(), dtype=np.float32)


@dataclass
class Templates:
    """Tissue templates and brain mask on one study grid."""

    affine: np.ndarray
    shape: tuple[int, int, int]
    gm: np.ndarray
    wm: np.ndarray
    brain: np.ndarray

    @property
    def csf(self) -> np.ndarray:
        return np.clip(self.brain - self.gm - self.wm, 0.0, 1.0)


@lru_cache(maxsize=4)
def templates(grid_mm: float) -> Templates:
    """nilearn's bundled MNI152 templates resampled to the study grid (no network)."""
    from nilearn import datasets, image

    affine, shape = study_grid(grid_mm)

    def on_grid(img) -> np.ndarray:
        return np.clip(to_grid(img, grid_mm), 0.0, 1.0)

    gm = on_grid(datasets.load_mni152_gm_template(resolution=1))
    wm = on_grid(datasets.load_mni152_wm_template(resolution=1))
    mask_img = datasets.load_mni152_brain_mask(resolution=1)
    mask_img = image.new_img_like(mask_img, np.asarray(mask_img.dataobj, dtype=np.float32))
    brain = (on_grid(mask_img) > 0.5).astype(np.float32)
    return Templates(affine=affine, shape=shape, gm=gm * brain, wm=wm * brain, brain=brain)


def brain_mask(grid_mm: float) -> np.ndarray:
    """MNI152 brain mask on the study grid (boolean)."""
    return templates(float(grid_mm)).brain > 0


def mm_coordinates(affine: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    """MNI mm coordinates of every voxel, shape (*shape, 3)."""
    ijk = np.stack(np.meshgrid(*[np.arange(s) for s in shape], indexing="ij"), axis=-1)
    return ijk @ affine[:3, :3].T + affine[:3, 3]


def to_image(volume: np.ndarray, grid_mm: float) -> nib.Nifti1Image:
    """A study-grid array as a NIfTI image, for nilearn plots and saving."""
    affine, _ = study_grid(grid_mm)
    img = nib.Nifti1Image(np.asarray(volume, dtype=np.float32), affine)
    img.header.set_xyzt_units("mm")
    return img
