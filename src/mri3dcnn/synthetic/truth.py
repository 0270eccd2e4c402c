"""The ground truth a synthetic cohort carries, read back: masks, latent patterns, region
features, and the effect sizes the cohort really realised.
"""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from .effects import Effects

#: the folder of a cohort holding its truth; the cohort's `.bidsignore` lists it, so BIDS
#: validators skip files that are not subject data
TRUTH_DIR = "ground_truth"


def read_truth(cohort_root: str | Path) -> dict | None:
    """The generator's summary (settings, amplitudes, realised d, ceiling, oracle), or None
    for a real cohort."""
    path = Path(cohort_root) / TRUTH_DIR / "truth.json"
    return json.loads(path.read_text()) if path.exists() else None


def truth_masks(cohort_root: str | Path) -> dict[str, nib.Nifti1Image]:
    """Planted-region masks by region name (empty for a real cohort)."""
    gt = Path(cohort_root) / TRUTH_DIR
    out = {}
    for p in sorted(gt.glob("region-*_mask.nii.gz")):
        name = p.name.split("_map-")[0].removeprefix("region-")
        out[name] = nib.load(p)
    return out


def planted_masks(cohort_root: str | Path) -> dict[str, dict[str, np.ndarray]]:
    """Ground-truth masks as boolean arrays, grouped by map then region name."""
    truth = read_truth(cohort_root)
    if truth is None:
        return {}
    region_map = {r["name"]: r["map"] for r in truth["effects"]["regions"]}
    out: dict[str, dict[str, np.ndarray]] = {}
    for name, img in truth_masks(cohort_root).items():
        out.setdefault(region_map[name], {})[name] = np.asarray(img.dataobj) > 0
    return out


def _table(cohort_root: str | Path, name: str) -> pd.DataFrame:
    path = Path(cohort_root) / TRUTH_DIR / name
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: {cohort_root} is not a synthetic cohort "
                                "made by this version (regenerate it with `mri3dcnn synth`).")
    return pd.read_csv(path, sep="\t", dtype={"participant_id": str})


def read_features(cohort_root: str | Path) -> pd.DataFrame:
    """Per subject: each planted region's mean and each map's brain mean, as generated."""
    return _table(cohort_root, "features.tsv")


def read_latent(cohort_root: str | Path) -> pd.DataFrame:
    """Per subject: latent pattern (control, none or a subtype) and per-region strengths."""
    return _table(cohort_root, "participants_truth.tsv")


def cohens_d(values: np.ndarray, y: np.ndarray, design: np.ndarray
             ) -> tuple[np.ndarray, np.ndarray]:
    """Covariate-adjusted Cohen's d of each column, patients (y = 1) minus controls, and its
    standard error (Hedges & Olkin's large-sample formula).

    The group coefficient of an OLS fit with the covariates in `design`, over the residual
    s.d.: how the meta-analyses the targets come from estimate d.
    """
    from .generator import residuals

    y = np.asarray(y, float)
    X = np.column_stack([design, y])
    beta, *_ = np.linalg.lstsq(X, values, rcond=None)
    _, sd = residuals(values, X)
    d = beta[-1] / np.maximum(sd, 1e-12)
    n1, n0 = y.sum(), (1 - y).sum()
    se = np.sqrt((n1 + n0) / (n1 * n0) + d**2 / (2 * (n1 + n0)))
    return d, se


def realised_d(participants: pd.DataFrame, feats: pd.DataFrame, eff: Effects) -> pd.DataFrame:
    """Each planted region's realised d with its 95 % CI, beside its target."""
    from .generator import covariates

    y = (participants["group"] == "patient").to_numpy()
    values = feats[[f"region:{r.name}" for r in eff.regions]].to_numpy(float)
    d, se = cohens_d(values, y, covariates(participants, feats["head_size"].to_numpy()))
    return pd.DataFrame({
        "region": [r.name for r in eff.regions], "map": [r.map for r in eff.regions],
        "target d": [r.d for r in eff.regions], "realised d": d,
        "CI low": d - 1.96 * se, "CI high": d + 1.96 * se,
        "n patients": int(y.sum()), "n controls": int((~y).sum())})


def realised_d_table(cohort_root: str | Path) -> pd.DataFrame:
    """Realised d per region with its 95 % CI beside its target, for a synthetic cohort.

    Parameters
    ----------
    cohort_root : folder written by `generate_cohort`.

    Returns
    -------
    One row per planted region: map, target d, realised d (site, age, sex and head size
    adjusted),
    CI low/high (normal approximation), group sizes; no rows for a real cohort.
    """
    truth = read_truth(cohort_root)
    if truth is None:
        return pd.DataFrame(columns=["region", "map", "target d", "realised d", "CI low",
                                     "CI high", "n patients", "n controls"])
    return pd.DataFrame(truth["realised_d"]).round(3)


def voxelwise_d(volumes: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Cohen's d per voxel, patients minus controls (unadjusted; 0 where undefined)."""
    a = np.asarray(volumes, dtype=np.float64)
    y = np.asarray(y).astype(bool)
    p, c = a[y], a[~y]
    pooled = np.sqrt(((len(p) - 1) * p.var(axis=0, ddof=1) + (len(c) - 1) * c.var(axis=0, ddof=1))
                     / (len(p) + len(c) - 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        d = (p.mean(axis=0) - c.mean(axis=0)) / pooled
    return np.nan_to_num(d, posinf=0.0, neginf=0.0).astype(np.float32)


def region_peaks(arrays: dict[str, np.ndarray], y: np.ndarray,
                 cohort_root: str | Path) -> pd.DataFrame:
    """Per planted region: the peak voxel-wise |t| (Welch, patients vs controls) inside it,
    the largest d inside it, and its size (no rows for a real cohort)."""
    from ..volumes import voxelwise_ttest

    rows = []
    for m, regions in planted_masks(cohort_root).items():
        if m not in arrays:
            continue
        t = voxelwise_ttest(arrays[m], y)
        d = voxelwise_d(arrays[m], y)
        rows += [{"region": name, "map": m, "peak |t| inside": float(np.abs(t[inside]).max()),
                  "peak |d| inside": float(np.abs(d[inside]).max()),
                  "voxels": int(inside.sum())} for name, inside in regions.items()]
    return pd.DataFrame(rows, columns=["region", "map", "peak |t| inside", "peak |d| inside",
                                       "voxels"]).round(2)
