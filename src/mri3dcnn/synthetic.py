"""A synthetic cohort with known ground truth, built offline from nilearn's MNI152 templates.

No MRI data set can be shared with the book, and the study's data were never released. A
cohort whose group differences are planted on purpose lets the book show what a paper
cannot: how close each model comes to the best achievable accuracy, and whether saliency
finds the regions that really differ.

Each subject gets grey- and white-matter probability maps and FA and MD maps, all warped by
a smooth random deformation and a global scaling (head size, age), then scanner effects
(site-specific intensity scaling and smooth noise). Patients carry changes of random
strength in named regions; some carry none, so the best accuracy is below 100 %.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import yaml
from scipy import ndimage
from tqdm import tqdm

from .atomic import atomic_directory
from .config import study_grid
from .maps import MAPS, bids_name

SPACE = "MNI152NLin2009aSym"


@dataclass(frozen=True)
class Region:
    """A planted group difference: a sphere in MNI mm on one map, with a signed effect.

    `effect` is the relative change of the map at the centre for a patient of strength 1
    (-0.3 means 30 % less grey matter); it fades smoothly to zero at the sphere's edge.
    """

    name: str
    map: str
    center: tuple[float, float, float]
    radius_mm: float
    effect: float

    def __post_init__(self) -> None:
        if self.map not in MAPS:
            raise ValueError(
                f"Region {self.name!r}: map {self.map!r} is not one of {MAPS}."
            )
        if self.radius_mm <= 0:
            raise ValueError(f"Region {self.name!r}: radius_mm must be positive.")
        if len(self.center) != 3:
            raise ValueError(f"Region {self.name!r}: center needs three MNI coordinates.")


@dataclass(frozen=True)
class Effects:
    """What differs between groups, and how much patients vary."""

    regions: tuple[Region, ...]
    p_unaffected: float = 0.15
    strength: tuple[float, float] = (0.5, 1.5)

    def as_dict(self) -> dict:
        return {
            "p_unaffected": self.p_unaffected,
            "strength": list(self.strength),
            "regions": [asdict(r) for r in self.regions],
        }


#: Salience network and striatum in grey matter, and frontal white-matter tracts in FA:
#: the regions the study reports.
DEFAULT_EFFECTS = Effects(
    regions=(
        Region("anterior_insula_L", "gm", (-36.0, 16.0, 2.0), 15.0, -0.40),
        Region("anterior_insula_R", "gm", (38.0, 16.0, 2.0), 15.0, -0.40),
        Region("dorsal_ACC", "gm", (0.0, 18.0, 32.0), 15.0, -0.40),
        Region("caudate_L", "gm", (-12.0, 12.0, 10.0), 12.0, -0.40),
        Region("caudate_R", "gm", (12.0, 12.0, 10.0), 12.0, -0.40),
        Region("putamen_L", "gm", (-24.0, 4.0, 2.0), 12.0, -0.40),
        Region("putamen_R", "gm", (24.0, 4.0, 2.0), 12.0, -0.40),
        Region("genu_corpus_callosum", "fa", (0.0, 26.0, 6.0), 15.0, -0.35),
        Region("anterior_limb_internal_capsule_L", "fa", (-19.0, 12.0, 6.0), 12.0, -0.35),
        Region("anterior_limb_internal_capsule_R", "fa", (19.0, 12.0, 6.0), 12.0, -0.35),
    )
)


def load_effects(path: str | Path | None) -> Effects:
    """Read an effects YAML (regions with map, MNI center, radius and signed effect)."""
    if path is None:
        return DEFAULT_EFFECTS
    path = Path(path)
    try:
        spec = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise ValueError(f"Cannot read effects file {path}: {err}") from err
    if not isinstance(spec, dict) or "regions" not in spec:
        raise ValueError(
            f"Effects file {path} needs a 'regions' list of "
            "{name, map, center: [x, y, z], radius_mm, effect}."
        )
    try:
        regions = tuple(
            Region(
                name=str(r["name"]), map=str(r["map"]),
                center=tuple(float(c) for c in r["center"]),
                radius_mm=float(r["radius_mm"]), effect=float(r["effect"]),
            )
            for r in spec["regions"]
        )
    except (KeyError, TypeError) as err:
        raise ValueError(
            f"Effects file {path}: each region needs name, map, center, radius_mm and "
            f"effect ({err})."
        ) from err
    lo, hi = spec.get("strength", DEFAULT_EFFECTS.strength)
    return Effects(
        regions=regions,
        p_unaffected=float(spec.get("p_unaffected", DEFAULT_EFFECTS.p_unaffected)),
        strength=(float(lo), float(hi)),
    )


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

    def on_grid(img, interpolation="continuous"):
        with warnings.catch_warnings():  # the mask is resampled linearly, then thresholded
            warnings.simplefilter("ignore", UserWarning)
            out = image.resample_img(
                img, target_affine=affine, target_shape=shape, interpolation=interpolation,
                force_resample=True, copy_header=True,
            )
        return np.clip(np.asarray(out.get_fdata(), dtype=np.float32), 0.0, 1.0)

    gm = on_grid(datasets.load_mni152_gm_template(resolution=1))
    wm = on_grid(datasets.load_mni152_wm_template(resolution=1))
    mask_img = datasets.load_mni152_brain_mask(resolution=1)
    mask_img = image.new_img_like(mask_img, np.asarray(mask_img.dataobj, dtype=np.float32))
    brain = (on_grid(mask_img) > 0.5).astype(np.float32)
    return Templates(affine=affine, shape=shape, gm=gm * brain, wm=wm * brain, brain=brain)


def mm_coordinates(affine: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    """MNI mm coordinates of every voxel, shape (*shape, 3)."""
    ijk = np.stack(np.meshgrid(*[np.arange(s) for s in shape], indexing="ij"), axis=-1)
    return ijk @ affine[:3, :3].T + affine[:3, 3]


def region_profile(region: Region, xyz: np.ndarray) -> np.ndarray:
    """Smooth weight of a planted change: 1 at the centre, fading to 0 at the radius."""
    d = np.linalg.norm(xyz - np.asarray(region.center), axis=-1)
    sigma = region.radius_mm / 2.0
    prof = np.exp(-0.5 * (d / sigma) ** 2)
    prof[d > region.radius_mm] = 0.0
    return prof.astype(np.float32)


def region_mask(region: Region, tpl: Templates, xyz: np.ndarray) -> np.ndarray:
    """Ground truth: the voxels of the sphere where the region's map carries signal."""
    d = np.linalg.norm(xyz - np.asarray(region.center), axis=-1)
    sphere = (d <= region.radius_mm) & (tpl.brain > 0)
    tissue = {"gm": tpl.gm, "wm": tpl.wm, "fa": tpl.wm, "md": tpl.brain}[region.map]
    mask = sphere & (tissue > 0.2)
    if not mask.any():  # coarse grids: keep at least the sphere itself
        mask = sphere
    if not mask.any():
        nearest = np.unravel_index(np.argmin(np.where(tpl.brain > 0, d, np.inf)), d.shape)
        mask = np.zeros(d.shape, bool)
        mask[nearest] = True
    return mask


def base_maps(tpl: Templates) -> dict[str, np.ndarray]:
    """Template-space maps of an average subject: GM, WM and FA and MD derived from them."""
    fa = (0.12 + 0.62 * tpl.wm**1.2) * tpl.brain
    md = (0.75 + 2.2 * tpl.csf + 0.05 * tpl.gm) * tpl.brain  # 10^-3 mm^2/s
    return {"gm": tpl.gm, "wm": tpl.wm, "fa": fa.astype(np.float32), "md": md.astype(np.float32)}


def smooth_noise(rng: np.random.Generator, shape, sd: float, sigma_vox: float) -> np.ndarray:
    """Spatially correlated Gaussian noise with standard deviation `sd`."""
    n = ndimage.gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma_vox)
    return n * (sd / max(float(n.std()), 1e-8))


def warp(volumes: list[np.ndarray], rng: np.random.Generator, scale: float,
         grid_mm: float, shape: tuple[int, int, int], displacement_mm: float = 2.0,
         center_vox: np.ndarray | None = None) -> list[np.ndarray]:
    """Apply one smooth random deformation and a global scaling to several volumes."""
    coarse = (4, 5, 4)
    disp = []
    for _ in range(3):
        c = rng.standard_normal(coarse) * (displacement_mm / grid_mm)
        fine = ndimage.zoom(c, [s / k for s, k in zip(shape, coarse, strict=True)], order=3,
                            mode="nearest", grid_mode=True)
        disp.append(fine[: shape[0], : shape[1], : shape[2]])
    grid = np.meshgrid(*[np.arange(s, dtype=np.float32) for s in shape], indexing="ij")
    center = np.array(shape, np.float32) / 2.0 if center_vox is None else center_vox
    coords = [center[a] + (grid[a] - center[a]) / scale + disp[a] for a in range(3)]
    return [ndimage.map_coordinates(v, coords, order=1, mode="constant", cval=0.0)
            for v in volumes]


def _site_params(n_sites: int, rng: np.random.Generator) -> list[dict]:
    return [
        {
            "site": f"site{chr(ord('A') + k)}",
            "scale": float(1.0 + rng.uniform(-0.06, 0.06)),
            "noise": float(rng.uniform(0.03, 0.06)),
        }
        for k in range(n_sites)
    ]


def _assign_subjects(n_subjects: int, sites: list[dict],
                     rng: np.random.Generator) -> pd.DataFrame:
    """Participants: balanced groups inside each site, same age and sex mix in both."""
    rows = []
    per_site = np.array_split(np.arange(n_subjects), len(sites))
    for site, idx in zip(sites, per_site, strict=True):
        groups = np.array(["patient", "control"] * (len(idx) // 2 + 1))[: len(idx)]
        rng.shuffle(groups)
        for i, g in zip(idx, groups, strict=True):
            rows.append({
                "participant_id": f"sub-{i + 1:03d}",
                "group": g,
                "site": site["site"],
                "age": int(rng.integers(18, 61)),
                "sex": str(rng.choice(["F", "M"])),
            })
    return pd.DataFrame(rows)


def oracle_accuracy(features: np.ndarray, y: np.ndarray, seed: int = 0) -> float:
    """Cross-validated accuracy of a classifier given the true pattern.

    Its features are what an observer who knows the truth would measure: the mean of each
    planted region, each map's whole-brain mean, site, age and sex (the nuisances).
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    n_splits = int(min(5, np.bincount(y).min()))
    if n_splits < 2:
        return float("nan")
    clf = make_pipeline(StandardScaler(), LogisticRegression(C=1.0))
    cv = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    pred = cross_val_predict(clf, features, y, cv=cv)
    return float((pred == y).mean())


def generate_cohort(out: str | Path, n_subjects: int = 180, seed: int = 2020,
                    grid_mm: float = 6.0, effects: Effects | str | Path | None = None,
                    n_sites: int = 3, displacement_mm: float = 1.5, scale_sd: float = 0.01,
                    progress: bool = True) -> Path:
    """Write a synthetic BIDS-derivatives cohort with its ground truth to `out`.

    Maps are in MNI space as after spatial normalisation: residual misregistration is a
    smooth displacement of `displacement_mm` (s.d.) and a global scaling of `scale_sd`;
    head size, sex and age act on intensities, as in modulated VBM maps. The folder is
    written next to its final place and renamed at the end, so an interrupted run never
    leaves a half-made cohort behind.
    """
    if n_subjects < 4:
        raise ValueError("A cohort needs at least 4 subjects (2 per group).")
    if n_sites < 1:
        raise ValueError("n_sites must be at least 1.")
    eff = effects if isinstance(effects, Effects) else load_effects(effects)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    tpl = templates(float(grid_mm))
    xyz = mm_coordinates(tpl.affine, tpl.shape)
    base = base_maps(tpl)
    profiles = [region_profile(r, xyz) for r in eff.regions]
    masks = [region_mask(r, tpl, xyz) for r in eff.regions]
    sites = _site_params(n_sites, rng)
    site_by_name = {s["site"]: s for s in sites}
    participants = _assign_subjects(n_subjects, sites, rng)
    center_vox = np.linalg.solve(tpl.affine, np.array([0.0, -18.0, 18.0, 1.0]))[:3]

    with atomic_directory(out) as tmp:
        truth_rows, region_means = [], []
        for row in tqdm(participants.itertuples(), total=len(participants),
                        desc="synthetic cohort", disable=not progress):
            patient = row.group == "patient"
            strength = 0.0
            if patient and rng.uniform() >= eff.p_unaffected:
                strength = float(rng.uniform(*eff.strength))
            maps = {k: v.copy() for k, v in base.items()}
            age_factor = 1.0 - 0.004 * (row.age - 40)
            maps["gm"] *= age_factor
            maps["fa"] *= 1.0 - 0.002 * (row.age - 40)
            for region, prof in zip(eff.regions, profiles, strict=True):
                if strength:
                    maps[region.map] *= 1.0 + region.effect * strength * prof
            head = (1.03 if row.sex == "M" else 0.97) * float(1.0 + 0.03 * rng.standard_normal())
            maps["gm"] *= head
            maps["wm"] *= head
            scale = float(1.0 + scale_sd * rng.standard_normal())
            names = list(MAPS)
            warped = warp([maps[k] for k in names] + [tpl.brain], rng, scale, grid_mm,
                          tpl.shape, displacement_mm=displacement_mm, center_vox=center_vox)
            brain = warped[-1] > 0.5
            site = site_by_name[row.site]
            sigma_vox = max(0.5, 4.0 / grid_mm)
            subj_dir = tmp / row.participant_id
            means = []
            for name, vol in zip(names, warped[:-1], strict=True):
                rel_noise = site["noise"] * (3.0 if name == "md" else 1.0)
                vol = vol * site["scale"] + smooth_noise(rng, tpl.shape, rel_noise, sigma_vox)
                vol = np.where(brain, vol, 0.0)
                hi = None if name == "md" else 1.0
                vol = np.clip(vol, 0.0, hi).astype(np.float32)
                path = subj_dir / bids_name(row.participant_id, name, grid_mm, SPACE)
                path.parent.mkdir(parents=True, exist_ok=True)
                img = nib.Nifti1Image(vol, tpl.affine)
                img.header.set_xyzt_units("mm")
                nib.save(img, path)
                if any(r.map == name for r in eff.regions):
                    means.append(float(vol[tpl.brain > 0].mean()))  # global level: nuisance
                for region, mask in zip(eff.regions, masks, strict=True):
                    if region.map == name:
                        means.append(float(vol[mask].mean()))
            region_means.append(means)
            truth_rows.append({"participant_id": row.participant_id,
                               "effect_strength": strength})

        participants.to_csv(tmp / "participants.tsv", sep="\t", index=False)
        (tmp / "participants.json").write_text(json.dumps({
            "group": {"Description": "diagnostic group",
                      "Levels": {"patient": "schizophrenia", "control": "healthy control"}},
            "site": {"Description": "acquisition site"},
            "age": {"Description": "age", "Units": "year"},
            "sex": {"Description": "sex", "Levels": {"F": "female", "M": "male"}},
        }, indent=2))
        (tmp / "dataset_description.json").write_text(json.dumps({
            "Name": "mri3dcnn synthetic cohort",
            "BIDSVersion": "1.9.0",
            "DatasetType": "derivative",
            "GeneratedBy": [{"Name": "mri3dcnn.synthetic", "Description":
                             "MNI152 templates with planted group differences"}],
        }, indent=2))

        gt = tmp / "ground_truth"
        gt.mkdir()
        for region, mask in zip(eff.regions, masks, strict=True):
            img = nib.Nifti1Image(mask.astype(np.uint8), tpl.affine)
            nib.save(img, gt / f"region-{region.name}_map-{region.map}_mask.nii.gz")
        truth = pd.DataFrame(truth_rows)
        truth.to_csv(gt / "participants_truth.tsv", sep="\t", index=False)
        y = (participants["group"] == "patient").to_numpy().astype(int)
        covariates = np.column_stack([
            pd.get_dummies(participants["site"]).to_numpy(float),
            participants["age"].to_numpy(float),
            (participants["sex"] == "M").to_numpy(float),
        ])
        feats = np.hstack([np.asarray(region_means, dtype=float).reshape(len(y), -1),
                           covariates])
        n_unaffected = int(((truth["effect_strength"] == 0) & (y == 1)).sum())
        summary = {
            "n_subjects": int(n_subjects),
            "seed": int(seed),
            "grid_mm": float(grid_mm),
            "n_sites": int(n_sites),
            "displacement_mm": float(displacement_mm),
            "scale_sd": float(scale_sd),
            "sites": sites,
            "effects": eff.as_dict(),
            "oracle_accuracy": oracle_accuracy(feats, y, seed) if feats.size else float("nan"),
            "ceiling_accuracy": 1.0 - n_unaffected / len(y),
            "n_unaffected_patients": n_unaffected,
        }
        (gt / "truth.json").write_text(json.dumps(summary, indent=2))
    return out


def read_truth(cohort_root: str | Path) -> dict | None:
    """The generator's summary (regions, oracle accuracy), or None for a real cohort."""
    path = Path(cohort_root) / "ground_truth" / "truth.json"
    return json.loads(path.read_text()) if path.exists() else None


def truth_masks(cohort_root: str | Path) -> dict[str, nib.Nifti1Image]:
    """Planted-region masks by region name (empty for a real cohort)."""
    gt = Path(cohort_root) / "ground_truth"
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
