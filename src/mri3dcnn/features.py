"""Handcrafted features: masked voxels (VBM-style) and atlas-regional means, per map.

Features are computed per subject without looking at any other subject, so they can be
made once for the whole cohort; everything fitted (scaling, screening, the classifier)
happens inside the cross-validated Pipeline.
"""

from __future__ import annotations

import numpy as np

from .atlas import aal_on_grid, region_means


def masked_voxels(arrays: dict[str, np.ndarray], maps: list[str] | tuple[str, ...],
                  mask: np.ndarray) -> np.ndarray:
    """Voxels inside the brain mask, maps concatenated: the VBM-style feature matrix."""
    return np.concatenate([np.asarray(arrays[m])[:, mask] for m in maps], axis=1)


def regional_means(arrays: dict[str, np.ndarray], maps: list[str] | tuple[str, ...],
                   grid_mm: float) -> tuple[np.ndarray, list[str]]:
    """Mean of each map in each AAL2 region; returns the matrix and its column names."""
    labels, table = aal_on_grid(grid_mm)
    blocks, names = [], []
    for m in maps:
        blocks.append(region_means(arrays[m], labels, table))
        names += [f"{m}:{r}" for r in table["name"]]
    return np.concatenate(blocks, axis=1), names
