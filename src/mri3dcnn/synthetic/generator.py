"""Simulate subjects and write them as a BIDS-derivatives cohort with its ground truth.

Each subject's grey- and white-matter maps start from nilearn's MNI152 templates with
smooth regional volume variation, age and head-size (sex) effects; FA and MD are derived
from the subject's tissue. Patients then carry their planted changes; every map is warped
by the subject's deformation, smoothed to the subject's smoothness, and passed through the
site's scanner (gain, contrast, noise). Amplitudes are calibrated on a separate sample of
simulated controls so that each region's population d is its target (`calibrate`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
from scipy import optimize
from threadpoolctl import threadpool_limits
from tqdm import tqdm

from ..atomic import atomic_directory
from ..maps import MAPS, bids_name
from ..space import SPACE, Templates, mm_coordinates, templates
from . import anatomy as an
from .effects import Effects, draw_strengths, load_effects, strength_moments
from .truth import TRUTH_DIR

#: MNI point the global scaling is centred on
SCALING_CENTER_MM = (0.0, -18.0, 18.0)
#: subjects simulated (not written) to calibrate the amplitudes
CALIBRATION_SUBJECTS = 200
#: of those, how many the slopes are measured on (they vary little between subjects)
SLOPE_SUBJECTS = 30


@dataclass
class _Setting:
    """Everything fixed for a cohort: templates on the grid, regions, sites, amplitudes."""

    tpl: Templates
    grid_mm: float
    eff: Effects
    anat: an.Anatomy
    profiles: list[np.ndarray]
    masks: list[np.ndarray]
    sites: dict[str, dict]
    center_vox: np.ndarray
    amplitude: np.ndarray

    @property
    def names(self) -> list[str]:
        return [r.name for r in self.eff.regions]


def _sites(n_sites: int, rng: np.random.Generator) -> list[dict]:
    """Scanner effects per site: gain, contrast (power on tissue maps), noise, smoothness."""
    return [{"site": f"site{chr(ord('A') + k)}",
             "gain": float(1.0 + rng.uniform(-0.06, 0.06)),
             "contrast": float(rng.uniform(0.9, 1.1)),
             "noise": float(rng.uniform(0.03, 0.06)),
             "fwhm_mm": float(rng.uniform(2.0, 6.0))}
            for k in range(n_sites)]


def assign_subjects(n_subjects: int, sites: list[dict], eff: Effects,
                    rng: np.random.Generator) -> pd.DataFrame:
    """Participants. Without confounds, groups are balanced inside each site and share one
    age and sex distribution; the confounds tilt the patient share across sites and make
    patients older."""
    rows = []
    per_site = np.array_split(np.arange(n_subjects), len(sites))
    tilt = np.linspace(1.0, -1.0, len(sites)) if len(sites) > 1 else np.zeros(1)
    for site, idx, t in zip(sites, per_site, tilt, strict=True):
        share = 0.5 + eff.confounds.site_imbalance * t
        n_pat = int(round(share * len(idx))) if eff.confounds.site_imbalance else len(idx) // 2
        if not eff.confounds.site_imbalance and len(idx) % 2:
            n_pat += int(rng.integers(0, 2))
        groups = np.array(["patient"] * n_pat + ["control"] * (len(idx) - n_pat))
        rng.shuffle(groups)
        for i, g in zip(idx, groups, strict=True):
            age = rng.normal(38.0, 11.0) + (eff.confounds.age_difference_years
                                             if g == "patient" else 0.0)
            rows.append({"participant_id": f"sub-{i + 1:03d}", "group": g,
                         "site": site["site"], "age": int(np.clip(round(age), 18, 70)),
                         "sex": str(rng.choice(["F", "M"]))})
    return pd.DataFrame(rows)


def _subject_maps(st: _Setting, row, rng: np.random.Generator
                  ) -> tuple[dict[str, np.ndarray], float]:
    """Template-space maps of one subject before any planted change (regional volume
    variation, age and head size on tissue; FA and MD derived from that tissue), and the
    subject's head size (relative intracranial volume)."""
    tpl, a = st.tpl, st.anat
    sig = a.regional_sigma_mm / st.grid_mm
    z = {k: an.smooth_noise(rng, tpl.shape, a.regional_sd, sig) for k in ("gm", "wm", "csf")}
    years = row.age - 40.0
    head = (1.03 if row.sex == "M" else 0.97) * float(1.0 + a.head_sd * rng.standard_normal())
    gm = tpl.gm * np.exp(z["gm"]) * (1.0 - 0.004 * years) * head
    wm = tpl.wm * np.exp(z["wm"])
    csf = tpl.csf * np.exp(z["csf"]) * (1.0 + 0.01 * years)
    fa = (0.12 + 0.62 * np.clip(wm, 0, 1) ** 1.2) * (1.0 - 0.002 * years)
    fa = fa * np.exp(an.smooth_noise(rng, tpl.shape, 0.03, sig))
    md = 0.75 + 2.2 * np.clip(csf, 0, 1) + 0.05 * np.clip(gm, 0, 1)
    md = md * (1.0 + 0.002 * years)
    return {"gm": gm, "wm": wm * (1.0 - 0.001 * years) * head,
            "fa": fa * tpl.brain, "md": md * tpl.brain}, head


def _scanner(st: _Setting, name: str, vol: np.ndarray, site: dict) -> np.ndarray:
    """The site's gain and contrast (a power on tissue maps, which live in [0, 1])."""
    if name == "md":
        return vol * site["gain"]
    return site["gain"] * np.clip(vol, 1e-3, None) ** site["contrast"]


def simulate(st: _Setting, row, strengths: np.ndarray, rng: np.random.Generator,
             derivatives: bool = False
             ) -> tuple[dict[str, np.ndarray], float, np.ndarray | None]:
    """One subject's final maps (zero outside its warped brain) and head size.

    With `derivatives`, also the matrix C (region x region): how each region's mean moves
    per unit of each region's amplitude x strength, for calibration.
    """
    maps, head = _subject_maps(st, row, rng)
    pre = {k: v.copy() for k, v in maps.items()}
    for k, (region, prof) in enumerate(zip(st.eff.regions, st.profiles, strict=True)):
        if strengths[k] and st.amplitude[k]:
            maps[region.map] *= 1.0 + st.amplitude[k] * strengths[k] * prof
    maps = {k: np.clip(v, 0.0, None) for k, v in maps.items()}
    a = st.anat
    field = an.displacement_field(st.tpl.shape, st.grid_mm, rng, a.displacement_mm,
                                  a.control_spacing_mm, st.tpl.brain)
    scale = float(1.0 + a.scale_sd * rng.standard_normal())
    site = st.sites[row.site]
    fwhm = site["fwhm_mm"] + float(rng.uniform(*a.fwhm_range_mm))
    names = list(MAPS)
    warped = an.warp([maps[k] for k in names] + [st.tpl.brain], field, scale, st.center_vox)
    brain = warped[-1] > 0.5
    out = {}
    for name, vol in zip(names, warped[:-1], strict=True):
        vol = _scanner(st, name, an.smooth(vol, fwhm, st.grid_mm), site)
        sd = site["noise"] * (3.0 if name == "md" else 1.0)
        vol = vol + an.smooth_noise(rng, st.tpl.shape, sd, max(0.5, 4.0 / st.grid_mm))
        out[name] = np.clip(np.where(brain, vol, 0.0), 0.0,
                            None if name == "md" else 1.0).astype(np.float32)
    if not derivatives:
        return out, head, None
    regions = st.eff.regions
    C = np.zeros((len(regions), len(regions)))
    smoothed = {}
    for k, (rk, prof) in enumerate(zip(regions, st.profiles, strict=True)):
        moved = an.warp([pre[rk.map] * prof], field, scale, st.center_vox)[0]
        moved = an.smooth(moved, fwhm, st.grid_mm)
        if rk.map not in smoothed:
            x = an.smooth(an.warp([pre[rk.map]], field, scale, st.center_vox)[0], fwhm,
                          st.grid_mm)
            gamma = 1.0 if rk.map == "md" else site["contrast"]
            smoothed[rk.map] = site["gain"] * gamma * np.clip(x, 1e-3, None) ** (gamma - 1.0)
        slope = np.where(brain, smoothed[rk.map] * moved, 0.0)
        for r, (rr, mask) in enumerate(zip(regions, st.masks, strict=True)):
            if rr.map == rk.map:
                C[r, k] = float(slope[mask].mean())
    return out, head, C


def features(st: _Setting, maps: dict[str, np.ndarray], head: float) -> dict[str, float]:
    """What the truth is measured on: each region's mean, each map's brain mean, and head
    size (what a study measures as intracranial volume)."""
    feats = {f"region:{r.name}": float(maps[r.map][m].mean())
             for r, m in zip(st.eff.regions, st.masks, strict=True)}
    brain = st.tpl.brain > 0
    feats.update({f"global:{k}": float(v[brain].mean()) for k, v in maps.items()})
    feats["head_size"] = float(head)
    return feats


def covariates(participants: pd.DataFrame, head_size: np.ndarray) -> np.ndarray:
    """Intercept, site dummies (one dropped), age, sex and head size: what d is adjusted
    for, as the meta-analyses the targets come from adjusted for intracranial volume."""
    sites = pd.get_dummies(participants["site"], drop_first=True).to_numpy(float)
    return np.column_stack([np.ones(len(participants)), sites,
                            participants["age"].to_numpy(float),
                            (participants["sex"] == "M").to_numpy(float),
                            np.asarray(head_size, float)])


def residuals(values: np.ndarray, design: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """OLS residuals of each column of `values` on `design`, and the residual s.d."""
    beta, *_ = np.linalg.lstsq(design, values, rcond=None)
    res = values - design @ beta
    dof = max(len(values) - np.linalg.matrix_rank(design), 1)
    return res, np.sqrt((res**2).sum(axis=0) / dof)


def calibrate(st: _Setting, rng: np.random.Generator, n: int = CALIBRATION_SUBJECTS) -> dict:
    """Amplitudes that give each region its target population d.

    `n` controls are simulated (same sites, ages and sexes as the cohort's controls) to
    measure each region mean's covariate-adjusted s.d. (sigma, see `covariates`) and its slope C per unit of
    every region's amplitude x strength. With mean strengths m and their covariance S over
    patients, region r's d is  (C a m)_r / sqrt(sigma_r^2 + (C_r a)' S (C_r a) / 2),
    which is solved for the amplitudes a. The slopes are then scaled by the change
    patients really get at those amplitudes (`_linearity`: clipping at the tissue bounds
    takes some away) and the amplitudes solved again.
    """
    eff = st.eff
    targets = np.array([r.d for r in eff.regions])
    sigma = np.ones(len(targets))
    C = np.zeros((len(targets), len(targets)))
    residual_cov = np.eye(len(targets))
    if np.any(targets) and n:
        people = assign_subjects(n, list(st.sites.values()), eff.null(), rng)
        feats, heads, slopes = [], [], []
        for i, row in enumerate(people.itertuples()):
            maps, head, c = simulate(st, row, np.zeros(len(targets)), rng,
                                     derivatives=i < SLOPE_SUBJECTS)
            f = features(st, maps, head)
            heads.append(head)
            feats.append([f[f"region:{nm}"] for nm in st.names])
            if c is not None:
                slopes.append(c)
        res, sigma = residuals(np.asarray(feats), covariates(people, np.asarray(heads)))
        residual_cov = np.cov(res, rowvar=False).reshape(len(targets), -1)
        C = np.mean(slopes, axis=0)
    m, S = strength_moments(eff)
    linearity = np.ones(len(targets))
    if not np.any(targets):
        amplitude = np.zeros(len(targets))
    else:
        amplitude = _solve_amplitudes(C, sigma, m, S, targets)
        if n:
            # the slopes are derivatives at no change; clipping at the tissue bounds makes
            # a real change smaller where a map is near 0 or 1, so each region's slope is
            # scaled by the change it really gets at these amplitudes, then solved again
            linearity = _linearity(st, amplitude, C, rng)
            C = C * linearity[:, None]
            amplitude = _solve_amplitudes(C, sigma, m, S, targets)
    return {"amplitude": amplitude.tolist(), "sigma": sigma.tolist(), "slope": C.tolist(),
            "linearity": linearity.tolist(),
            "residual_cov": residual_cov.tolist(), "strength_mean": m.tolist(),
            "strength_cov": S.tolist(), "n_subjects": int(n)}


def _solve_amplitudes(C: np.ndarray, sigma: np.ndarray, m: np.ndarray, S: np.ndarray,
                      targets: np.ndarray) -> np.ndarray:
    """The amplitudes whose population d (see `calibrate`) is the target of every region."""
    def d_of(a):
        Ca = C * a[None, :]
        extra = np.einsum("rk,kl,rl->r", Ca, S, Ca)
        return (Ca @ m) / np.sqrt(sigma**2 + extra / 2.0)

    diag = np.maximum(np.abs(np.diag(C)) * m, 1e-9)
    start = targets * sigma / diag
    sol = optimize.least_squares(lambda a: d_of(a) - targets, start, xtol=1e-12, ftol=1e-12)
    if np.max(np.abs(d_of(sol.x) - targets)) > 1e-3:
        raise ValueError(
            "The effects cannot reach their target d with these patient patterns: "
            f"reached {np.round(d_of(sol.x), 3).tolist()} for "
            f"{targets.tolist()}. Lower the targets or raise the loadings.")
    return sol.x


def _linearity(st: _Setting, amplitude: np.ndarray, C: np.ndarray, rng: np.random.Generator,
               n: int = SLOPE_SUBJECTS) -> np.ndarray:
    """Per region, the mean change patients really get at `amplitude` over the change the
    slopes `C` predict. Each patient is simulated twice from one seed, with and without
    its changes, so anatomy and noise cancel and only the clipping is measured."""
    people = assign_subjects(n, list(st.sites.values()), st.eff, rng)
    strengths, _ = draw_strengths(st.eff, n, rng, stratified=True)
    seeds = rng.integers(2**32, size=n)
    saved, st.amplitude = st.amplitude, np.asarray(amplitude, float)
    real, linear = np.zeros(len(amplitude)), np.zeros(len(amplitude))
    try:
        for row, s, seed in zip(people.itertuples(), strengths, seeds, strict=True):
            changed = features(st, *simulate(st, row, s, np.random.default_rng(seed))[:2])
            plain = features(st, *simulate(st, row, np.zeros_like(s),
                                           np.random.default_rng(seed))[:2])
            real += [changed[f"region:{nm}"] - plain[f"region:{nm}"] for nm in st.names]
            linear += C @ (st.amplitude * s)
    finally:
        st.amplitude = saved
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.where(np.abs(linear) > 1e-12, real / linear, 1.0)
    return np.clip(ratio, 0.25, 1.5)


def _setting(eff: Effects, grid_mm: float, anat: an.Anatomy, sites: list[dict]) -> _Setting:
    tpl = templates(float(grid_mm))
    xyz = mm_coordinates(tpl.affine, tpl.shape)
    center = np.linalg.solve(tpl.affine, np.array([*SCALING_CENTER_MM, 1.0]))[:3]
    return _Setting(
        tpl=tpl, grid_mm=float(grid_mm), eff=eff, anat=anat,
        profiles=[an.region_profile(r, xyz, tpl) for r in eff.regions],
        masks=[an.region_mask(r, tpl, xyz) for r in eff.regions],
        sites={s["site"]: s for s in sites}, center_vox=center,
        amplitude=np.zeros(len(eff.regions)))


def generate_cohort(out: str | Path, n_subjects: int = 180, seed: int = 2020,
                    grid_mm: float = 6.0, effects: Effects | str | Path | None = None,
                    n_sites: int = 3, anatomy: an.Anatomy | None = None,
                    null: bool = False, calibration_subjects: int = CALIBRATION_SUBJECTS,
                    progress: bool = True) -> Path:
    """Write a synthetic BIDS-derivatives cohort with its ground truth to `out`.

    Parameters
    ----------
    out : folder to write (replaced whole, atomically: an interrupted run leaves nothing).
    n_subjects, seed, grid_mm, n_sites : cohort size, random seed, study grid, sites.
    effects : an `Effects`, a YAML path, or None for the default (`effects.yaml`).
    anatomy : between-subject variation (`Anatomy()` by default).
    null : every planted effect at zero (same regions, same nuisances): the null cohort.
    calibration_subjects : simulated controls the amplitudes are calibrated on.

    Returns
    -------
    The cohort folder. `ground_truth/` holds the region masks, each subject's latent
    pattern and strengths, the region features and `truth.json` (settings, amplitudes,
    realised d, ceiling, oracle); `.bidsignore` lists it, so BIDS validators skip it.
    """
    if n_subjects < 4:
        raise ValueError("A cohort needs at least 4 subjects (2 per group).")
    if n_sites < 1:
        raise ValueError("n_sites must be at least 1.")
    with threadpool_limits(1):  # small matrix products: threads only contend
        return _generate(Path(out), n_subjects, seed, grid_mm, effects, n_sites, anatomy,
                         null, calibration_subjects, progress)


def _generate(out: Path, n_subjects: int, seed: int, grid_mm: float,
              effects: Effects | str | Path | None, n_sites: int, anatomy: an.Anatomy | None,
              null: bool, calibration_subjects: int, progress: bool) -> Path:
    eff = effects if isinstance(effects, Effects) else load_effects(effects)
    if null:
        eff = eff.null()
    anat = anatomy or an.Anatomy()
    rng = np.random.default_rng(seed)
    sites = _sites(n_sites, rng)
    st = _setting(eff, grid_mm, anat, sites)
    calibration = calibrate(st, np.random.default_rng([seed, 1]), calibration_subjects)
    st.amplitude = np.asarray(calibration["amplitude"])
    participants = assign_subjects(n_subjects, sites, eff, rng)
    patient = (participants["group"] == "patient").to_numpy()
    strengths = np.zeros((n_subjects, len(eff.regions)))
    pattern = np.full(n_subjects, -2)  # -2: control
    strengths[patient], pattern[patient] = draw_strengths(eff, int(patient.sum()), rng,
                                                             stratified=True)

    with atomic_directory(out) as tmp:
        feats = []
        for i, row in enumerate(tqdm(participants.itertuples(), total=n_subjects,
                                     desc="synthetic cohort", disable=not progress)):
            maps, head, _ = simulate(st, row, strengths[i], rng)
            for name, vol in maps.items():
                path = tmp / row.participant_id / bids_name(row.participant_id, name,
                                                            grid_mm, SPACE)
                path.parent.mkdir(parents=True, exist_ok=True)
                img = nib.Nifti1Image(vol, st.tpl.affine)
                img.header.set_xyzt_units("mm")
                nib.save(img, path)
            feats.append(features(st, maps, head))
        _write_bids_metadata(tmp, participants)
        _write_truth(tmp / TRUTH_DIR, st, participants, pattern, strengths,
                     pd.DataFrame(feats), calibration,
                     {"n_subjects": int(n_subjects), "seed": int(seed),
                      "grid_mm": float(grid_mm), "n_sites": int(n_sites), "null": bool(null),
                      "anatomy": anat.as_dict(), "sites": sites, "effects": eff.as_dict()})
    return out


def _write_bids_metadata(root: Path, participants: pd.DataFrame) -> None:
    # the ground truth is no BIDS data: validators are told to skip its folder
    (root / ".bidsignore").write_text(f"{TRUTH_DIR}/\n")
    participants.to_csv(root / "participants.tsv", sep="\t", index=False)
    (root / "participants.json").write_text(json.dumps({
        "group": {"Description": "diagnostic group",
                  "Levels": {"patient": "schizophrenia", "control": "healthy control"}},
        "site": {"Description": "acquisition site"},
        "age": {"Description": "age", "Units": "year"},
        "sex": {"Description": "sex", "Levels": {"F": "female", "M": "male"}},
    }, indent=2))
    (root / "dataset_description.json").write_text(json.dumps({
        "Name": "mri3dcnn synthetic cohort",
        "BIDSVersion": "1.9.0",
        "DatasetType": "derivative",
        "GeneratedBy": [{"Name": "mri3dcnn.synthetic", "Description":
                         "MNI152 templates with planted group differences"}],
    }, indent=2))


def _write_truth(gt: Path, st: _Setting, participants: pd.DataFrame, pattern: np.ndarray,
                 strengths: np.ndarray, feats: pd.DataFrame, calibration: dict,
                 settings: dict) -> None:
    from .oracle import bayes_ceiling, default_oracle_accuracy, strict_bound
    from .truth import realised_d

    gt.mkdir()
    for region, mask in zip(st.eff.regions, st.masks, strict=True):
        nib.save(nib.Nifti1Image(mask.astype(np.uint8), st.tpl.affine),
                 gt / f"region-{region.name}_map-{region.map}_mask.nii.gz")
    names = [p.name for p in st.eff.patterns]
    latent = pd.DataFrame({
        "participant_id": participants["participant_id"],
        "pattern": ["control" if k == -2 else "none" if k == -1 else names[k]
                    for k in pattern],
        **{f"strength:{r.name}": strengths[:, j] for j, r in enumerate(st.eff.regions)}})
    latent.to_csv(gt / "participants_truth.tsv", sep="\t", index=False)
    feats.insert(0, "participant_id", participants["participant_id"].to_numpy())
    feats.to_csv(gt / "features.tsv", sep="\t", index=False)
    y = (participants["group"] == "patient").to_numpy()
    table = realised_d(participants, feats, st.eff)
    ceiling = bayes_ceiling(st.eff, calibration)
    n_unaffected = int((pattern == -1).sum())
    summary = {
        **settings,
        "calibration": calibration,
        "realised_d": table.to_dict(orient="records"),
        "bayes_ceiling": ceiling,
        "strict_bound": strict_bound(st.eff),
        "n_unaffected_patients": n_unaffected,
        "n_patients": int(y.sum()),
        # what earlier readers of truth.json use: the CV oracle on the default plan (3 folds,
        # the cohort's seed) and the expected-accuracy bound
        "oracle_accuracy": default_oracle_accuracy(participants, feats, settings["seed"]),
        "ceiling_accuracy": strict_bound(st.eff)["accuracy"],
    }
    (gt / "truth.json").write_text(json.dumps(summary, indent=2))
