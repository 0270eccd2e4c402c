"""Handcrafted features: masked voxels (VBM-style), atlas-regional means and whole-brain
measures per map, and the covariates an analysis adjusts them for.

Features are computed per subject without looking at any other subject, so they can be
made once for the whole cohort; everything fitted (covariate adjustment, scaling, screening,
the classifier) happens inside the cross-validated Pipeline.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

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


def global_measures(arrays: dict[str, np.ndarray], maps: list[str] | tuple[str, ...],
                    mask: np.ndarray) -> np.ndarray:
    """Mean of each map inside the brain mask, one column per map: the whole-brain
    measures (total grey matter, mean FA, mean MD) that large case-control studies report
    their most reliable effects on."""
    return np.column_stack([np.asarray(arrays[m])[:, mask].mean(axis=1) for m in maps])


#: how result keys and tables name the whole-brain measures adjusted for covariates
GLOBAL_FEATURES = "global means, adjusted"

#: participants.tsv columns used as covariates when present, and how each is coded
COVARIATE_COLUMNS = ("age", "sex")


def covariates(participants: pd.DataFrame, arrays: dict[str, np.ndarray],
               mask: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """The covariates case-control analyses adjust for: age and sex where the participants
    table has them (sex coded 1 for male, 0 otherwise) and head size, measured as the log
    of the total tissue (GM + WM) in the mask; returns the matrix and its column names.

    Rows follow `participants`' order (the cohort's subjects)."""
    cols, names = [], []
    for c in COVARIATE_COLUMNS:
        if c not in participants.columns:
            continue
        v = participants[c]
        if c == "sex":
            v = v.astype(str).str.strip().str.upper().str[:1].eq("M").astype(float)
        v = pd.to_numeric(v, errors="coerce").to_numpy(float)
        if np.isnan(v).any():
            bad = participants.index[np.isnan(v)].tolist()[:5]
            raise ValueError(f"participants.tsv: column {c!r} is missing or not a number "
                             f"for {bad}; fill it in or drop the column to leave {c} out "
                             "of the covariates.")
        cols.append(v)
        names.append(c)
    tissue = sum(np.asarray(arrays[m])[:, mask].sum(axis=1) for m in ("gm", "wm")
                 if m in arrays)
    if not isinstance(tissue, int):
        cols.append(np.log(np.clip(tissue, 1e-6, None)))
        names.append("log tissue volume")
    return np.column_stack(cols) if cols else np.empty((len(participants), 0)), names
