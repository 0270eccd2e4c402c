"""Raw BIDS -> GM, WM, FA and MD maps in MNI space, in the layout the cohort loader reads.

Per subject, with ANTsPy and dipy:

- T1w: N4 bias correction; brain extraction by an affine registration to nilearn's MNI152
  template and its brain mask brought back to the subject; affine then SyN registration of
  the extracted brain to the template; Atropos segmentation in subject space with the
  template's CSF/GM/WM maps as priors; GM and WM probabilities warped to the study grid,
  multiplied by the Jacobian determinant when modulation is asked for.
- DWI: brain mask of the mean b0 (median Otsu), tensor fit (FA; MD in 10^-3 mm^2/s), b0
  rigidly registered to the subject's extracted T1w, FA and MD carried to MNI through that
  rigid transform and the T1w's warp.

Each subject is written into a temporary folder and renamed into place when complete, so a
rerun skips finished subjects and redoes the rest. A subject that fails is listed in the QC
table with its error, never dropped without a word. The QC table also flags registrations
whose similarity with the template falls below a threshold.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from functools import lru_cache
from importlib import metadata
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from .atomic import atomic_directory, write_text
from .cohort import ambiguity_message, parse_bids_name
from .config import study_grid
from .maps import bids_name

#: template space of the maps written (nilearn's MNI152: ICBM 2009a nonlinear symmetric)
SPACE = "MNI152NLin2009aSym"
#: order of the Atropos classes and their template priors
CLASSES = ("csf", "gm", "wm")


class PrepareError(ValueError):
    """Raw data that cannot be prepared; the message names the file and what to do."""


@dataclass(frozen=True)
class PrepareConfig:
    """What `prepare` does; written into dataset_description.json of the output."""

    #: grid of the maps written (mm); 3 mm is the original study's 61 x 73 x 61 grid, and
    #: the cohort loader resamples to each profile's grid
    grid_mm: float = 3.0
    #: template resolution registration and segmentation priors use (mm)
    reg_mm: float = 2.0
    #: multiply tissue maps by the Jacobian determinant (tissue volume preserved)
    modulate: bool = False
    #: Atropos weight of the template priors (0: data only, 1: priors only)
    prior_weight: float = 0.25
    #: shrink factor of N4 (higher is faster, coarser bias field) and its iterations per level
    n4_shrink: int = 2
    n4_iterations: tuple[int, ...] = (50, 50, 50, 50)
    #: a T1w-to-template correlation (inside the template brain) below this is flagged
    t1_min_corr: float = 0.8
    #: an FA-to-template-WM correlation below this flags the DWI registration
    fa_min_corr: float = 0.3
    #: visit to use where subjects have several (ses- label), None when there is one
    session: str | None = None
    #: participants.tsv column holding the diagnosis, and its values per group
    group_column: str = "group"
    patients: tuple[str, ...] = ("patient",)
    controls: tuple[str, ...] = ("control",)
    seed: int = 0


# --- templates --------------------------------------------------------------------------

@lru_cache(maxsize=4)
def template_images(grid_mm: float) -> dict[str, nib.Nifti1Image]:
    """nilearn's MNI152 T1 (skull-stripped), tissue maps and brain mask on a `grid_mm` grid."""
    import warnings

    from nilearn import datasets, image

    affine, shape = study_grid(grid_mm)

    def on_grid(img):
        img = image.new_img_like(img, np.asarray(img.dataobj, dtype=np.float32))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            out = image.resample_img(img, target_affine=affine, target_shape=shape,
                                     interpolation="linear", force_resample=True,
                                     copy_header=True)
        return np.asarray(out.get_fdata(), dtype=np.float32)

    brain = (on_grid(datasets.load_mni152_brain_mask(resolution=1)) > 0.5).astype(np.float32)
    gm = np.clip(on_grid(datasets.load_mni152_gm_template(resolution=1)), 0, 1) * brain
    wm = np.clip(on_grid(datasets.load_mni152_wm_template(resolution=1)), 0, 1) * brain
    t1 = np.clip(on_grid(datasets.load_mni152_template(resolution=1)), 0, None) * brain
    arrays = {"t1": t1, "gm": gm, "wm": wm, "csf": np.clip(brain - gm - wm, 0, 1),
              "brain": brain}
    return {k: nib.Nifti1Image(v, affine) for k, v in arrays.items()}


def _ants(img: nib.Nifti1Image):
    import ants

    out = nib.Nifti1Image(np.asarray(img.dataobj, np.float32), img.affine)
    out.header.set_xyzt_units("mm", "sec")
    return ants.from_nibabel_nifti(out)


def _nib(img) -> nib.Nifti1Image:
    import ants

    return ants.to_nibabel_nifti(img)


# --- finding the raw files ------------------------------------------------------------------

@dataclass(frozen=True)
class RawSubject:
    """One subject's raw files as found in the BIDS folder."""

    participant_id: str
    group: str
    t1w: Path | None
    dwi: Path | None = None
    bval: Path | None = None
    bvec: Path | None = None
    #: why the subject cannot be prepared (a file missing), reported in the QC table
    missing: str = ""


def _one(found: list[Path], subject: str, what: str, session: str | None) -> Path | None:
    parsed = [(p, parse_bids_name(p.name)[0]) for p in found]
    if session:
        parsed = [(p, e) for p, e in parsed if e.get("ses") == session]
    if len(parsed) > 1:
        raise PrepareError(ambiguity_message(subject, what, parsed))
    return parsed[0][0] if parsed else None


def _sidecar(image: Path, ext: str, bids_dir: Path) -> Path | None:
    """The .bval/.bvec beside a DWI series, or the one inherited from the dataset's top."""
    stem = image.name.split(".")[0]
    for candidate in (image.with_name(stem + ext), bids_dir / f"dwi{ext}"):
        if candidate.is_file():
            return candidate
    return None


def find_subjects(bids_dir: str | Path, cfg: PrepareConfig) -> tuple[list[RawSubject],
                                                                   pd.DataFrame]:
    """Subjects to prepare, and the participants table with a `group` column.

    Rows whose diagnosis is neither a patient nor a control value are left out and listed by
    the caller; a subject without a T1w, or with a DWI lacking .bval/.bvec, comes back with
    `missing` saying which file, so a partly downloaded dataset is prepared as far as it goes.
    """
    bids_dir = Path(bids_dir)
    tsv = bids_dir / "participants.tsv"
    if not tsv.is_file():
        raise PrepareError(f"{tsv} not found: a raw BIDS folder needs participants.tsv with "
                           "participant_id and a diagnosis column (see --group-column).")
    table = pd.read_csv(tsv, sep="\t", dtype=str)
    col = cfg.group_column
    if col not in table.columns or "participant_id" not in table.columns:
        raise PrepareError(f"{tsv}: needs columns participant_id and {col!r} (has "
                           f"{list(table.columns)}); name the diagnosis column with "
                           "--group-column.")
    values = table[col].astype(str).str.strip()
    lower = {v.lower(): g for g, vs in (("patient", cfg.patients), ("control", cfg.controls))
             for v in vs}
    table["group"] = values.str.lower().map(lower)
    subjects = []
    for row in table.dropna(subset=["group"]).itertuples():
        sid = row.participant_id
        folder = bids_dir / sid
        t1 = _one(sorted(folder.rglob("*_T1w.nii*")), sid, "T1w", cfg.session)
        dwi = _one(sorted(folder.rglob("*_dwi.nii*")), sid, "DWI", cfg.session)
        bval = _sidecar(dwi, ".bval", bids_dir) if dwi else None
        bvec = _sidecar(dwi, ".bvec", bids_dir) if dwi else None
        missing = ""
        if t1 is None:
            missing = (f"no T1w image under {folder}"
                       + (f" for ses-{cfg.session}" if cfg.session else "")
                       + "; add it or remove the subject from participants.tsv")
        elif dwi is not None and (bval is None or bvec is None):
            missing = f"{dwi} has no .bval/.bvec beside it; add them"
        subjects.append(RawSubject(sid, row.group, t1, dwi, bval, bvec, missing))
    return subjects, table


# --- one subject ----------------------------------------------------------------------------

def _corr(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    x, y = a[mask].astype(np.float64), b[mask].astype(np.float64)
    if x.std() == 0 or y.std() == 0:
        return 0.0
    return float(np.corrcoef(x, y)[0, 1])


def _affine_det(transform_file: str) -> float:
    import ants

    tx = ants.read_transform(transform_file)
    return float(abs(np.linalg.det(np.asarray(tx.parameters[:9]).reshape(3, 3))))


@contextmanager
def _temporary_files_in(folder: str) -> Iterator[None]:
    """ANTsPy names its own scratch files with `tempfile.mktemp` (Atropos leaves three
    probability images per subject) and never deletes them; pointing `tempfile` at the
    subject's scratch folder removes them with it."""
    before = tempfile.tempdir
    tempfile.tempdir = folder
    try:
        yield
    finally:
        tempfile.tempdir = before


def process_t1w(t1w: nib.Nifti1Image, cfg: PrepareConfig, workdir: Path) -> dict:
    """Bias-corrected, extracted, registered and segmented T1w: the maps on the study grid,
    the transforms to MNI, and the QC images and similarity."""
    import ants

    tpl = {k: _ants(v) for k, v in template_images(cfg.reg_mm).items()}
    out_ref = _ants(template_images(cfg.grid_mm)["brain"])
    raw = _ants(t1w)
    n4 = ants.n4_bias_field_correction(
        raw, mask=ants.get_mask(raw), shrink_factor=cfg.n4_shrink,
        convergence={"iters": list(cfg.n4_iterations), "tol": 1e-7})
    n4 = n4 / float(np.percentile(n4.numpy()[n4.numpy() > 0], 99))
    prefix = str(workdir / "t1_")
    aff = ants.registration(tpl["t1"], n4, "Affine", outprefix=prefix + "aff_")
    mask = ants.apply_transforms(n4, tpl["brain"], aff["invtransforms"], whichtoinvert=[True])
    mask = ants.iMath(ants.threshold_image(mask, 0.5, 2.0), "MD", 1)
    brain = n4 * mask
    reg = ants.registration(tpl["t1"], brain, "SyN", outprefix=prefix + "syn_",
                            initial_transform=aff["fwdtransforms"][0])
    inverse = [t.endswith(".mat") for t in reg["invtransforms"]]
    priors = [ants.apply_transforms(brain, tpl[c], reg["invtransforms"], whichtoinvert=inverse)
              for c in CLASSES]
    seg = ants.atropos(a=brain, x=mask, i=priors, m="[0.1,1x1x1]", c="[5,0]",
                       priorweight=cfg.prior_weight)
    probs = dict(zip(CLASSES, seg["probabilityimages"], strict=True))
    maps = {}
    if cfg.modulate:
        jac = ants.create_jacobian_determinant_image(out_ref, reg["fwdtransforms"][0])
        factor = jac.numpy() * _affine_det(reg["fwdtransforms"][-1])
    for name in ("gm", "wm"):
        warped = ants.apply_transforms(out_ref, probs[name], reg["fwdtransforms"]).numpy()
        warped = np.clip(warped, 0.0, 1.0)
        maps[name] = warped * factor if cfg.modulate else warped
    t1_mni = ants.apply_transforms(tpl["t1"], brain, reg["fwdtransforms"]).numpy()
    tpl_brain = tpl["brain"].numpy() > 0
    return {"maps": maps, "brain": brain, "fwd": reg["fwdtransforms"], "t1_mni": t1_mni,
            "t1_corr": _corr(t1_mni, tpl["t1"].numpy(), tpl_brain)}


def process_dwi(dwi: nib.Nifti1Image, bval: Path, bvec: Path, t1: dict, cfg: PrepareConfig,
                workdir: Path) -> dict:
    """FA and MD fitted in DWI space and carried to the study grid through the b0-to-T1w
    rigid transform and the T1w's warp."""
    import ants
    from dipy.core.gradients import gradient_table
    from dipy.io import read_bvals_bvecs
    from dipy.reconst.dti import TensorModel
    from dipy.segment.mask import median_otsu

    data = np.asarray(dwi.dataobj, dtype=np.float32)
    bvals, bvecs = read_bvals_bvecs(str(bval), str(bvec))
    if data.ndim != 4 or data.shape[3] != len(bvals):
        raise PrepareError(f"{dwi.get_filename()} has shape {data.shape} but {bval} lists "
                           f"{len(bvals)} volumes; they must match.")
    gtab = gradient_table(bvals, bvecs=bvecs)
    b0 = data[..., gtab.b0s_mask].mean(axis=3)
    _, mask = median_otsu(b0, median_radius=2, numpass=1)
    fit = TensorModel(gtab).fit(data, mask=mask)
    fa = np.clip(np.nan_to_num(fit.fa), 0.0, 1.0) * mask
    md = np.clip(np.nan_to_num(fit.md) * 1e3, 0.0, None) * mask  # 10^-3 mm^2/s
    b0_img = _ants(nib.Nifti1Image(b0 * mask, dwi.affine))
    rigid = ants.registration(t1["brain"], b0_img, "Rigid",
                              outprefix=str(workdir / "b0_rigid_"))
    chain = [*t1["fwd"], *rigid["fwdtransforms"]]
    out_ref = _ants(template_images(cfg.grid_mm)["brain"])
    maps = {}
    for name, vol in (("fa", fa), ("md", md)):
        img = _ants(nib.Nifti1Image(vol.astype(np.float32), dwi.affine))
        maps[name] = np.clip(ants.apply_transforms(out_ref, img, chain).numpy(), 0.0, None)
    wm = template_images(cfg.grid_mm)["wm"].get_fdata()
    brain = template_images(cfg.grid_mm)["brain"].get_fdata() > 0
    return {"maps": maps, "fa_corr": _corr(maps["fa"], wm, brain)}


def _qc_figure(path: Path, t1_mni: np.ndarray, maps: dict[str, np.ndarray], cfg: PrepareConfig,
               title: str) -> None:
    """Middle slices of the warped T1w and of each map, the template's brain edge on top."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tpl = template_images(cfg.grid_mm)["brain"].get_fdata() > 0
    reg_tpl = template_images(cfg.reg_mm)["brain"].get_fdata() > 0
    rows = [("T1w", t1_mni, reg_tpl), *[(k.upper(), v, tpl) for k, v in maps.items()]]
    fig, axes = plt.subplots(len(rows), 3, figsize=(7, 2.3 * len(rows)))
    for r, (name, vol, edge) in enumerate(rows):
        for a in range(3):
            idx = vol.shape[a] // 2
            ax = axes[r, a]
            ax.imshow(np.rot90(np.take(vol, idx, axis=a)), cmap="gray")
            ax.contour(np.rot90(np.take(edge, idx, axis=a)).astype(float), levels=[0.5],
                       colors="r", linewidths=0.6)
            ax.set_axis_off()
        axes[r, 0].set_title(name, loc="left", fontsize=9)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def _sidecar_json(source: Path, bids_dir: Path, cfg: PrepareConfig, name: str) -> dict:
    desc = {"gm": "grey matter probability", "wm": "white matter probability",
            "fa": "fractional anisotropy (DTI)", "md": "mean diffusivity (DTI)"}[name]
    out = {"Description": desc, "Sources": [f"bids:raw:{source.relative_to(bids_dir)}"],
           "SpatialReference": SPACE, "Resolution": f"{cfg.grid_mm:g} mm isotropic"}
    if name in ("gm", "wm"):
        out["Modulated"] = cfg.modulate
    if name == "md":
        out["Units"] = "10^-3 mm^2/s"
    return out


def prepare_subject(subject: RawSubject, bids_dir: Path, out_dir: Path,
                    cfg: PrepareConfig) -> dict:
    """Prepare one subject into out_dir/<participant_id>, atomically; returns its QC row."""
    from ants.config import set_ants_deterministic

    threads = os.environ.get("ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS")
    set_ants_deterministic(True, cfg.seed)  # seeds the registration's sampling; sets 1 thread
    if threads:
        os.environ["ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"] = threads
    start = time.time()
    final = out_dir / subject.participant_id
    with tempfile.TemporaryDirectory(prefix="mri3dcnn-prepare-") as work, \
            _temporary_files_in(work), atomic_directory(final) as tmp:
        work = Path(work)
        t1 = process_t1w(nib.load(subject.t1w), cfg, work)
        maps = dict(t1["maps"])
        row = {"participant_id": subject.participant_id, "t1_corr": round(t1["t1_corr"], 4),
               "fa_corr": np.nan}
        sources = {"gm": subject.t1w, "wm": subject.t1w}
        if subject.dwi is not None:
            dwi = process_dwi(nib.load(subject.dwi), subject.bval, subject.bvec, t1, cfg, work)
            maps.update(dwi["maps"])
            row["fa_corr"] = round(dwi["fa_corr"], 4)
            sources.update(fa=subject.dwi, md=subject.dwi)
        affine, _ = study_grid(cfg.grid_mm)
        for name, vol in maps.items():
            rel = bids_name(subject.participant_id, name, cfg.grid_mm, SPACE,
                            session=cfg.session)
            path = tmp / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            nib.save(nib.Nifti1Image(vol.astype(np.float32), affine), path)
            sidecar = path.with_name(path.name.replace(".nii.gz", ".json"))
            sidecar.write_text(json.dumps(_sidecar_json(sources[name], bids_dir, cfg, name),
                                          indent=2))
        figures = tmp / "figures"
        figures.mkdir()
        _qc_figure(figures / f"{subject.participant_id}_desc-qc.png", t1["t1_mni"], maps, cfg,
                   f"{subject.participant_id}: T1w corr {row['t1_corr']:.2f}")
        row["seconds"] = round(time.time() - start, 1)
        (figures / f"{subject.participant_id}_desc-qc.json").write_text(json.dumps(row))
    return row


def _run_one(subject: RawSubject, bids_dir: Path, out_dir: Path, cfg: PrepareConfig,
             threads: int) -> dict:
    os.environ["ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"] = str(threads)
    try:
        row = prepare_subject(subject, bids_dir, out_dir, cfg)
        return {**row, "status": "prepared", "error": ""}
    except Exception as err:  # reported in the QC table, never dropped
        last = traceback.extract_tb(err.__traceback__)[-1]
        return {"participant_id": subject.participant_id, "status": "failed",
                "error": f"{type(err).__name__}: {err} ({Path(last.filename).name}:"
                         f"{last.lineno})"}


# --- the whole folder -------------------------------------------------------------------------

def _versions() -> list[dict]:
    def v(dist: str) -> str:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return "unknown"

    return [
        {"Name": "mri3dcnn prepare", "Version": v("mri3dcnn"),
         "Description": "N4, template-based brain extraction, affine+SyN to MNI152, Atropos "
                        "with template priors; DTI fit, b0-to-T1w rigid registration"},
        {"Name": "ANTsPy", "Version": v("antspyx"),
         "Description": "N4BiasFieldCorrection, antsRegistration (Affine, SyN, Rigid), Atropos"},
        {"Name": "dipy", "Version": v("dipy"),
         "Description": "median_otsu brain mask, TensorModel (FA, MD)"},
        {"Name": "nilearn", "Version": v("nilearn"),
         "Description": "MNI152 T1, GM, WM templates and brain mask (ICBM 2009a symmetric)"},
        {"Name": "nibabel", "Version": v("nibabel"), "Description": "NIfTI input and output"},
    ]


def _write_dataset_files(bids_dir: Path, out_dir: Path, table: pd.DataFrame,
                         cfg: PrepareConfig) -> None:
    raw_desc = {}
    if (bids_dir / "dataset_description.json").is_file():
        raw_desc = json.loads((bids_dir / "dataset_description.json").read_text())
    desc = {"Name": f"{raw_desc.get('Name', bids_dir.name)}: GM, WM, FA, MD maps",
            "BIDSVersion": "1.9.0", "DatasetType": "derivative", "GeneratedBy": _versions(),
            "SourceDatasets": [{"URL": bids_dir.resolve().as_uri(),
                                **({"DOI": raw_desc["DatasetDOI"]}
                                   if "DatasetDOI" in raw_desc else {})}],
            "PipelineConfiguration": asdict(cfg)}
    write_text(out_dir / "dataset_description.json", json.dumps(desc, indent=2, default=str))
    keep = table.dropna(subset=["group"])
    cols = ["participant_id", "group", *[c for c in keep.columns
                                         if c not in ("participant_id", "group")]]
    write_text(out_dir / "participants.tsv", keep[cols].to_csv(sep="\t", index=False))


def prepare(bids_dir: str | Path, out_dir: str | Path, cfg: PrepareConfig | None = None,
            n_jobs: int = 1, progress: bool = True) -> pd.DataFrame:
    """Prepare every subject of a raw BIDS folder; the QC table, also written as qc.tsv.

    Parameters
    ----------
    bids_dir : path
        Raw BIDS: participants.tsv and sub-*/[ses-*/]anat/*_T1w.nii[.gz], optionally
        sub-*/[ses-*/]dwi/*_dwi.nii[.gz] with .bval/.bvec.
    out_dir : path
        Derivatives folder the cohort loader reads; subjects already there are kept.
    cfg : PrepareConfig
        Grids, modulation, priors, QC thresholds, session and group coding.
    n_jobs : int
        Subjects prepared in parallel (joblib processes, one ITK thread each when > 1).

    Returns
    -------
    pandas.DataFrame
        One row per participant: status (prepared, done before, failed, missing, excluded),
        error,
        similarity metrics and whether the registration is flagged.
    """
    from joblib import Parallel, delayed
    from tqdm.auto import tqdm

    cfg = cfg or PrepareConfig()
    bids_dir, out_dir = Path(bids_dir), Path(out_dir)
    subjects, table = find_subjects(bids_dir, cfg)
    out_dir.mkdir(parents=True, exist_ok=True)
    clean_partial(out_dir)
    _write_dataset_files(bids_dir, out_dir, table, cfg)
    rows, todo = [], []
    for s in subjects:
        done = out_dir / s.participant_id / "figures" / f"{s.participant_id}_desc-qc.json"
        if s.missing:
            rows.append({"participant_id": s.participant_id, "status": "missing",
                         "error": s.missing})
        elif done.is_file():
            rows.append({**json.loads(done.read_text()), "status": "done before", "error": ""})
        else:
            todo.append(s)
    threads = 1 if n_jobs != 1 else max(1, os.cpu_count() or 1)
    jobs = (delayed(_run_one)(s, bids_dir, out_dir, cfg, threads) for s in todo)
    results = Parallel(n_jobs=n_jobs, return_as="generator_unordered")(jobs)
    rows += list(tqdm(results, total=len(todo), desc="prepare", unit="subject",
                      disable=not progress))
    excluded = table[table["group"].isna()]
    rows += [{"participant_id": r.participant_id, "status": "excluded",
              "error": f"{cfg.group_column}={getattr(r, cfg.group_column)!r} is neither a "
                       f"patient {cfg.patients} nor a control {cfg.controls} value"}
             for r in excluded.itertuples()]
    qc = pd.DataFrame(rows).reindex(columns=["participant_id", "status", "t1_corr", "fa_corr",
                                             "flagged", "seconds", "error"])
    qc["flagged"] = (qc["t1_corr"] < cfg.t1_min_corr) | (qc["fa_corr"] < cfg.fa_min_corr)
    qc = qc.sort_values("participant_id").reset_index(drop=True)
    write_text(out_dir / "qc.tsv", qc.to_csv(sep="\t", index=False))
    failed = qc[qc["status"].isin(["failed", "missing"])]
    if len(failed) and progress:
        for r in failed.itertuples():
            print(f"prepare: {r.participant_id} {r.status}, skipped: {r.error}")
    _drop_failed_from_participants(out_dir, set(failed["participant_id"]))
    return qc


def _drop_failed_from_participants(out_dir: Path, failed: set[str]) -> None:
    """participants.tsv lists only subjects with maps, so the cohort loads; qc.tsv keeps why."""
    if not failed:
        return
    tsv = out_dir / "participants.tsv"
    table = pd.read_csv(tsv, sep="\t", dtype=str)
    write_text(tsv, table[~table["participant_id"].isin(failed)].to_csv(sep="\t", index=False))


def clean_partial(out_dir: str | Path) -> None:
    """Remove temporary subject folders a killed run left behind."""
    for p in Path(out_dir).glob(".sub-*"):
        shutil.rmtree(p, ignore_errors=True)
