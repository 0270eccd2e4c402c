"""Maps on one grid: NIfTI checks, resampling to the study grid, brain mask, array cache.

Training reads arrays, never NIfTI: every map is checked and resampled once, then kept as a
memory-mapped float32 `.npy` keyed by the files' content hashes and the grid, so a second
run (or a second chapter) costs a file open.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
from tqdm import tqdm

from .atomic import save_npy
from .cohort import Cohort
from .space import brain_mask, study_grid, to_grid, to_image  # noqa: F401  (re-exported)

CACHE_VERSION = "1"


class VolumeError(ValueError):
    """A map that cannot be used; the message names the subject, the file and the fix."""


def load_checked(path: str | Path, subject: str = "?", map_name: str = "?") -> nib.Nifti1Image:
    """Open one map and check it is a readable, finite, 3D image with a sane affine."""
    path = Path(path)
    where = f"subject {subject}, map {map_name}, file {path}"
    try:
        img = nib.load(path)
        data = np.asarray(img.dataobj, dtype=np.float32)
    except Exception as err:  # nibabel raises many types for broken files
        raise VolumeError(
            f"Cannot read {where}: {err}. Re-export the file as NIfTI (.nii or .nii.gz) "
            "or replace it."
        ) from err
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise VolumeError(
            f"{where}: expected a 3D volume, got shape {data.shape}. Give one map per file "
            "(split 4D series, e.g. with nilearn.image.index_img)."
        )
    if not np.isfinite(data).all():
        n_bad = int((~np.isfinite(data)).sum())
        raise VolumeError(
            f"{where}: {n_bad} voxel(s) are NaN or infinite. Replace them (e.g. with 0 "
            "outside the brain) before using the map."
        )
    affine = img.affine
    if not np.isfinite(affine).all() or abs(np.linalg.det(affine[:3, :3])) < 1e-6:
        raise VolumeError(f"{where}: the affine is singular or not finite; fix the header.")
    return nib.Nifti1Image(data, affine)


_HASHES: dict[tuple, str] = {}


def file_hash(path: str | Path) -> str:
    """sha256 of a file, remembered per (path, size, mtime) within the process."""
    st = os.stat(path)
    memo = (str(path), st.st_size, st.st_mtime_ns)
    if memo not in _HASHES:
        with open(path, "rb") as f:
            _HASHES[memo] = hashlib.file_digest(f, "sha256").hexdigest()
    return _HASHES[memo]


def load_map(cohort: Cohort, map_name: str, grid_mm: float, cache_dir: str | Path,
             progress: bool = True) -> np.ndarray:
    """All subjects' `map_name` on the study grid, shape (n_subjects, X, Y, Z), memory-mapped.

    Checks every file on the way in: one shape and affine per map across subjects, and
    signal inside the brain mask.
    """
    paths = cohort.paths(map_name)
    digest = hashlib.sha256(
        f"{CACHE_VERSION}|{map_name}|{grid_mm}".encode()
        + "".join(file_hash(p) for p in paths).encode()
    ).hexdigest()[:20]
    target = Path(cache_dir) / f"{map_name}-{grid_mm:g}mm-{digest}.npy"
    if target.exists():
        return np.load(target, mmap_mode="r")

    mask = brain_mask(grid_mm)
    _, shape = study_grid(grid_mm)
    out = np.zeros((len(paths), *shape), dtype=np.float32)
    ref: tuple | None = None
    for i, (sub, path) in enumerate(tqdm(list(zip(cohort.subjects, paths, strict=True)),
                                         desc=f"load {map_name}", disable=not progress)):
        img = load_checked(path, sub, map_name)
        geom = (img.shape, np.round(img.affine, 3).tobytes())
        if ref is None:
            ref = (geom, sub, path)
        elif geom != ref[0]:
            raise VolumeError(
                f"subject {sub}, map {map_name}, file {path}: grid {img.shape} / affine "
                f"differs from subject {ref[1]} ({ref[2]}). All {map_name} maps must be "
                "in one space; re-run the normalisation for this subject."
            )
        vol = to_grid(img, grid_mm)
        inside = vol[mask]
        if not np.any(inside != 0) or float(inside.std()) == 0.0:
            raise VolumeError(
                f"subject {sub}, map {map_name}, file {path}: the map is empty or constant "
                "inside the MNI brain mask. Check that it is in MNI space and not blank."
            )
        out[i] = vol * mask
    save_npy(target, out)
    return np.load(target, mmap_mode="r")


def load_maps(cohort: Cohort, maps: list[str] | tuple[str, ...], grid_mm: float,
              cache_dir: str | Path, progress: bool = True) -> dict[str, np.ndarray]:
    """`load_map` for several maps."""
    return {m: load_map(cohort, m, grid_mm, cache_dir, progress) for m in maps}


def qc_table(arrays: dict[str, np.ndarray], ids: list[str], mask: np.ndarray) -> pd.DataFrame:
    """Per subject and map: mean and s.d. in the brain, and correlation with the cohort mean.

    A low correlation flags a map that is misregistered, mislabelled or broken.
    """
    rows = []
    for m, a in arrays.items():
        x = np.asarray(a)[:, mask]
        ref = x.mean(axis=0)
        xc, rc = x - x.mean(axis=1, keepdims=True), ref - ref.mean()
        corr = (xc @ rc) / (np.linalg.norm(xc, axis=1) * np.linalg.norm(rc) + 1e-12)
        for i, s in enumerate(ids):
            rows.append({"participant_id": s, "map": m, "mean": float(x[i].mean()),
                         "sd": float(x[i].std()), "corr_to_mean": float(corr[i])})
    out = pd.DataFrame(rows)
    z = out.groupby("map")["corr_to_mean"].transform(lambda c: (c - c.median()) / (
        1.4826 * (c - c.median()).abs().median() + 1e-12))
    out["outlier"] = z < -5
    return out


def voxelwise_ttest(volumes: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Welch t statistic per voxel, patients minus controls (0 where undefined)."""
    from scipy import stats

    a = np.asarray(volumes)
    t, _ = stats.ttest_ind(a[y == 1], a[y == 0], axis=0, equal_var=False)
    return np.nan_to_num(t).astype(np.float32)
