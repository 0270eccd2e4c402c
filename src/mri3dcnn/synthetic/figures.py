"""Figures of a synthetic cohort's truth: the realised effect, voxel by voxel, beside the
regions it was planted in."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from ..maps import label as map_label
from ..space import to_image
from .truth import planted_masks, read_truth, voxelwise_d


def effect_maps(arrays: dict[str, np.ndarray], y: np.ndarray, cohort_root, grid_mm: float,
                cut=(0, -10, 2), vmax: float = 0.8) -> plt.Figure:
    """Per map with a planted region: the voxel-wise Cohen's d (patients minus controls)
    on the left, the planted regions' outlines over it on the right.

    Parameters
    ----------
    arrays : maps on the study grid, (subjects, X, Y, Z) each (`Study.arrays`).
    y : 1 for patients, 0 for controls, in the arrays' subject order.
    cohort_root : the synthetic cohort's folder (its masks are read from there).
    grid_mm : the study grid.

    Returns
    -------
    A figure with one row per map that carries planted regions.
    """
    from nilearn import plotting

    masks = planted_masks(cohort_root)
    if not masks:
        fig, ax = plt.subplots(figsize=(6, 1))
        ax.axis("off")
        ax.text(0.5, 0.5, "No planted regions: this is not a synthetic cohort.",
                ha="center", va="center")
        return fig
    diffuse = {r["name"] for r in read_truth(cohort_root)["effects"]["regions"]
               if not r["centers"]}
    names = [m for m in arrays if m in masks]
    fig, axes = plt.subplots(len(names), 2, figsize=(14, 2.6 * len(names)), squeeze=False)
    for row, m in zip(axes, names, strict=True):
        d = voxelwise_d(arrays[m], y)
        bg = to_image(np.asarray(arrays[m]).mean(axis=0), grid_mm)
        plotting.plot_stat_map(to_image(d, grid_mm), bg_img=bg, cut_coords=cut, axes=row[0],
                               vmax=vmax, threshold=0.05, cmap="RdBu_r", draw_cross=False,
                               title=f"{map_label(m)}: voxel-wise d", black_bg=True)
        focal = {n: v for n, v in masks[m].items() if n not in diffuse}
        spread = [n for n in masks[m] if n in diffuse]
        labels = np.zeros(d.shape, np.int16)
        for k, inside in enumerate(focal.values(), start=1):
            labels[inside & (labels == 0)] = k
        display = plotting.plot_stat_map(to_image(d, grid_mm), bg_img=bg, cut_coords=cut,
                                         axes=row[1], vmax=vmax, threshold=0.05,
                                         cmap="RdBu_r", draw_cross=False, colorbar=False,
                                         title=f"{map_label(m)}: planted "
                                               f"{', '.join(focal) or '-'}"
                                               + (f" + diffuse {', '.join(spread)}"
                                                  if spread else ""), black_bg=True)
        for k in range(1, labels.max() + 1):
            display.add_contours(to_image((labels == k).astype(np.float32), grid_mm),
                                 levels=[0.5], colors=[plt.cm.tab10((k - 1) % 10)],
                                 linewidths=1.2)
    fig.tight_layout()
    return fig
