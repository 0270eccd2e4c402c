"""Interactive 3D views of brain maps for the book's pages, working offline.

nilearn's `view_img` embeds its JavaScript and images in the page; only its favicon link
points to another host, and a page read offline must request nothing remote, so it is
dropped.
"""

from __future__ import annotations

import re

import numpy as np

from .volumes import to_image

_REMOTE_ICON = re.compile(r"<link[^>]*rel=\"icon\"[^>]*>", re.IGNORECASE | re.DOTALL)


def interactive_map(volume: np.ndarray, background: np.ndarray, grid_mm: float, title: str,
                    threshold: float = 0.3):
    """A brain map a reader can click through (three orthogonal slices and a colour bar),
    over a background on the study grid.

    Parameters
    ----------
    volume : ndarray
        The map on the study grid, e.g. SVM weights or group saliency scaled to [-1, 1].
    background : ndarray
        The anatomy under it on the same grid, e.g. the cohort's mean grey matter.
    grid_mm : float
        The study grid's voxel size.
    title : str
        Shown in the view.
    threshold : float
        Values of smaller magnitude are transparent.

    Returns
    -------
    nilearn HTMLDocument
        Displays as a self-contained iframe in a notebook and on the book's page.
    """
    from nilearn.plotting import view_img

    view = view_img(to_image(volume, grid_mm), bg_img=to_image(background, grid_mm),
                    threshold=threshold, symmetric_cmap=True, black_bg=False,
                    resampling_interpolation="nearest", title=title, width_view=640)
    view.html = _REMOTE_ICON.sub("", view.html)
    return view
