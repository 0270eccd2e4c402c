"""`prepare` on raw BIDS the tests simulate: a T1w made from nilearn's tissue templates under a
known affine, smooth deformation, skull and intensity bias, and a DWI made with dipy's
gradient tables from a known tensor per tissue, placed in its own rigidly moved space."""

import json
import shutil
import tempfile
from functools import lru_cache
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from scipy import ndimage

from mri3dcnn.cli import main
from mri3dcnn.cohort import find_maps
from mri3dcnn.config import study_grid
from mri3dcnn.prepare import PrepareConfig, PrepareError, find_subjects, prepare, template_images

#: small grids so one subject takes well under a minute on one core
CFG = PrepareConfig(grid_mm=4.0, reg_mm=4.0, n4_shrink=3, n4_iterations=(25, 25))
#: tensor eigenvalues (10^-3 mm^2/s) and b0 signal per tissue: WM anisotropic along x
TENSORS = {"csf": ((3.0, 3.0, 3.0), 1.0), "gm": ((0.9, 0.75, 0.7), 0.8),
           "wm": ((1.6, 0.35, 0.35), 0.65)}


def _rotation(degrees_x, degrees_z):
    ax, az = np.deg2rad(degrees_x), np.deg2rad(degrees_z)
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ rx


def subject_to_mni(p):
    """The known subject-to-MNI mapping (mm -> mm): scaled rotation, shift, smooth warp."""
    m = 1.05 * _rotation(4, 6) @ p + np.array([4.0, -6.0, 3.0])[:, None]
    m[0] += 4.0 * np.sin(2 * np.pi * p[1] / 140.0)
    m[2] += 3.0 * np.cos(2 * np.pi * p[0] / 160.0)
    return m


def dwi_to_subject(q):
    """The known rigid move of the DWI scan relative to the T1w (mm -> mm)."""
    return _rotation(-3, 4) @ q + np.array([-3.0, 2.0, 4.0])[:, None]


def _grid(shape, mm, centre=(0.0, -18.0, 8.0)):
    affine = np.diag([mm, mm, mm, 1.0])
    affine[:3, 3] = np.asarray(centre) - mm * (np.asarray(shape) - 1) / 2
    ijk = np.indices(shape).reshape(3, -1)
    return affine, affine[:3, :3] @ ijk + affine[:3, 3:]


def _sample(vol, affine, world, order=1):
    ijk = np.linalg.inv(affine)[:3, :3] @ world + np.linalg.inv(affine)[:3, 3:]
    return ndimage.map_coordinates(vol, ijk, order=order, mode="constant")


@lru_cache(maxsize=1)
def _mni_tissues(mm=2.0):
    t = template_images(mm)
    arrays = {k: t[k].get_fdata().astype(np.float32) for k in ("gm", "wm", "csf", "brain")}
    depth = ndimage.distance_transform_edt(arrays["brain"] < 0.5) * mm
    arrays["skull"] = ((depth > 3) & (depth < 7)).astype(np.float32)
    arrays["scalp"] = ((depth >= 7) & (depth < 12)).astype(np.float32)
    return t["gm"].affine, arrays


def _gtab():
    from dipy.core.gradients import gradient_table
    from dipy.data import get_sphere

    dirs = get_sphere(name="repulsion100").vertices[:30]
    bvecs = np.vstack([np.zeros((2, 3)), dirs])
    return gradient_table(np.r_[0, 0, np.full(30, 1000.0)], bvecs=bvecs)


def _signal(probs, gtab):
    """Partial-volume DWI signal of tissue fractions (n, 3) under the tissue tensors."""
    g, b = gtab.bvecs, gtab.bvals
    out = 0.0
    for k, t in enumerate(("csf", "gm", "wm")):
        evals, s0 = TENSORS[t]
        adc = b * (g[:, 0] ** 2 * evals[0] + g[:, 1] ** 2 * evals[1] + g[:, 2] ** 2 * evals[2])
        out = out + probs[:, k:k + 1] * s0 * np.exp(-adc * 1e-3)[None, :]
    return out


def simulate_subject(root, sid, rng, dwi=True):
    """One raw BIDS subject; returns nothing, the truth is computed in MNI space."""
    affine_mni, tis = _mni_tissues()
    shape = (64, 76, 64)
    affine_t1, world = _grid(shape, 3.0)
    m = subject_to_mni(world)
    p = {k: _sample(v, affine_mni, m) for k, v in tis.items()}
    t1 = 0.25 * p["csf"] + 0.6 * p["gm"] + 1.0 * p["wm"] + 0.08 * p["skull"] + 0.5 * p["scalp"]
    bias = np.exp(0.25 * world[0] / 90.0 - 0.15 * world[2] / 90.0)
    t1 = 1000 * (t1 * bias + rng.normal(0, 0.01, t1.shape))
    (root / sid / "anat").mkdir(parents=True)
    nib.save(nib.Nifti1Image(np.clip(t1, 0, None).reshape(shape).astype(np.float32),
                             affine_t1), root / sid / "anat" / f"{sid}_T1w.nii.gz")
    if not dwi:
        return
    dshape = (48, 56, 48)
    affine_dwi, qworld = _grid(dshape, 4.0)
    md = subject_to_mni(dwi_to_subject(qworld))
    probs = np.stack([_sample(tis[k], affine_mni, md) for k in ("csf", "gm", "wm")], axis=1)
    gtab = _gtab()
    sig = 1000 * _signal(probs, gtab)
    sig = np.abs(sig + rng.normal(0, 5.0, sig.shape))  # SNR 200 in the b0 of CSF
    (root / sid / "dwi").mkdir(parents=True)
    stem = root / sid / "dwi" / f"{sid}_dwi"
    nib.save(nib.Nifti1Image(sig.reshape(*dshape, -1).astype(np.float32), affine_dwi),
             f"{stem}.nii.gz")
    np.savetxt(f"{stem}.bval", gtab.bvals[None, :], fmt="%g")
    np.savetxt(f"{stem}.bvec", gtab.bvecs.T, fmt="%.6f")


def truth(grid_mm):
    """GM and FA the pipeline should recover, on the study grid in MNI space."""
    from dipy.reconst.dti import TensorModel

    t = template_images(grid_mm)
    probs = np.stack([t[k].get_fdata() for k in ("csf", "gm", "wm")], axis=-1)
    brain = t["brain"].get_fdata() > 0
    gtab = _gtab()
    sig = np.zeros(brain.shape + (len(gtab.bvals),))
    sig[brain] = 1000 * _signal(probs[brain], gtab)
    fit = TensorModel(gtab).fit(sig, mask=brain)
    return {"gm": t["gm"].get_fdata(), "wm": t["wm"].get_fdata(), "fa": np.nan_to_num(fit.fa),
            "md": np.nan_to_num(fit.md) * 1e3, "brain": brain}


def write_raw(root, groups, rng=None, dwi=True):
    rng = rng or np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    (root / "dataset_description.json").write_text(json.dumps(
        {"Name": "simulated raw", "BIDSVersion": "1.9.0"}))
    pd.DataFrame({"participant_id": list(groups), "diagnosis": list(groups.values())}).to_csv(
        root / "participants.tsv", sep="\t", index=False)
    for sid in groups:
        simulate_subject(root, sid, rng, dwi=dwi)
    return root


def _dice(a, b):
    return 2 * (a & b).sum() / (a.sum() + b.sum())


CODING = {"group_column": "diagnosis", "patients": ("SCHZ",), "controls": ("CONTROL",)}


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """sub-01 simulated; sub-02 with a corrupt T1w, sub-03 of a group the study leaves out,
    sub-04 without files; sub-05 a T1w of smooth noise, whose registration cannot succeed."""
    root = tmp_path_factory.mktemp("prep")
    raw = write_raw(root / "raw", {"sub-01": "CONTROL"})
    _add_broken_and_excluded(raw)
    table = pd.read_csv(raw / "participants.tsv", sep="\t")
    pd.concat([table, pd.DataFrame({"participant_id": ["sub-05"], "diagnosis": ["SCHZ"]})]).to_csv(
        raw / "participants.tsv", sep="\t", index=False)
    t1 = nib.load(raw / "sub-01" / "anat" / "sub-01_T1w.nii.gz")
    noise = ndimage.gaussian_filter(np.random.default_rng(5).normal(size=t1.shape), 2.0)
    (raw / "sub-05" / "anat").mkdir(parents=True)
    nib.save(nib.Nifti1Image((1000 * (noise - noise.min())).astype(np.float32), t1.affine),
             raw / "sub-05" / "anat" / "sub-05_T1w.nii.gz")
    cfg = PrepareConfig(**{**CFG.__dict__, **CODING})
    qc = prepare(raw, root / "out", cfg, progress=False)
    return raw, root / "out", cfg, qc


def _add_broken_and_excluded(raw):
    table = pd.read_csv(raw / "participants.tsv", sep="\t")
    extra = pd.DataFrame({"participant_id": ["sub-02", "sub-03", "sub-04"],
                          "diagnosis": ["SCHZ", "BIPOLAR", "CONTROL"]})  # sub-04: no files
    pd.concat([table, extra]).to_csv(raw / "participants.tsv", sep="\t", index=False)
    (raw / "sub-02" / "anat").mkdir(parents=True)
    (raw / "sub-02" / "anat" / "sub-02_T1w.nii.gz").write_bytes(b"not a nifti")


@pytest.mark.slow
def test_recovers_gm_and_fa(prepared):
    """Dice of GM and WM thresholded at 0.5 >= 0.8; in deep white matter the median FA error
    < 0.05 and mean FA within 0.05; median MD error < 0.1 x 10^-3 mm^2/s."""
    _, out, cfg, qc = prepared
    row = qc.set_index("participant_id").loc["sub-01"]
    assert row.status == "prepared" and not row.flagged, row.to_dict()
    noise = qc.set_index("participant_id").loc["sub-05"]
    assert noise.status == "prepared" and noise.flagged, noise.to_dict()  # QC catches it
    t = truth(cfg.grid_mm)
    found = {m: find_maps(out / "sub-01", m, "sub-01") for m in ("gm", "wm", "fa", "md")}
    assert all(len(f) == 1 for f in found.values()), found
    got = {m: nib.load(f[0][0]).get_fdata() for m, f in found.items()}
    assert nib.load(found["gm"][0][0]).shape == study_grid(cfg.grid_mm)[1]
    dice_gm = _dice(got["gm"] > 0.5, t["gm"] > 0.5)
    dice_wm = _dice(got["wm"] > 0.5, t["wm"] > 0.5)
    assert dice_gm >= 0.8, dice_gm
    assert dice_wm >= 0.8, dice_wm
    deep_wm = ndimage.binary_erosion(t["wm"] > 0.9)
    fa_err = np.abs(got["fa"] - t["fa"])[deep_wm]
    assert deep_wm.sum() > 50 and np.median(fa_err) < 0.05, np.median(fa_err)
    assert abs(got["fa"][deep_wm].mean() - t["fa"][deep_wm].mean()) < 0.05
    md_err = np.abs(got["md"] - t["md"])[deep_wm]
    assert np.median(md_err) < 0.1, np.median(md_err)


@pytest.mark.slow
def test_outputs_are_bids_derivatives(prepared):
    raw, out, cfg, qc = prepared
    desc = json.loads((out / "dataset_description.json").read_text())
    tools = {g["Name"]: g["Version"] for g in desc["GeneratedBy"]}
    assert {"ANTsPy", "dipy", "nilearn", "nibabel", "mri3dcnn prepare"} <= set(tools)
    assert desc["DatasetType"] == "derivative" and "simulated raw" in desc["Name"]
    sidecars = sorted((out / "sub-01").rglob("*.json"))
    md = next(json.loads(p.read_text()) for p in sidecars if "param-MD" in p.name)
    assert md["Units"] == "10^-3 mm^2/s"
    assert md["Sources"] == ["bids:raw:sub-01/dwi/sub-01_dwi.nii.gz"]
    assert (out / "sub-01" / "figures" / "sub-01_desc-qc.png").stat().st_size > 1000
    # only subjects with maps are participants; the others are in qc.tsv with the reason
    assert list(pd.read_csv(out / "participants.tsv", sep="\t")["participant_id"]) == [
        "sub-01", "sub-05"]  # flagged subjects stay, for the user to judge from the figure
    assert (pd.read_csv(out / "qc.tsv", sep="\t")["participant_id"]).tolist() == [
        "sub-01", "sub-02", "sub-03", "sub-04", "sub-05"]


@pytest.mark.slow
def test_rerun_resumes_and_flags_by_threshold(prepared):
    raw, out, cfg, _ = prepared
    before = (out / "sub-01" / "anat").stat().st_mtime_ns
    strict = PrepareConfig(**{**cfg.__dict__, "t1_min_corr": 0.999})
    qc = prepare(raw, out, strict, progress=False).set_index("participant_id")
    assert qc.loc["sub-01", "status"] == "done before" and qc.loc["sub-01", "flagged"]
    assert (out / "sub-01" / "anat").stat().st_mtime_ns == before
    assert qc.loc["sub-02", "status"] == "failed"  # retried, still failing


def _raw_without_images(tmp_path):
    """A folder prepare can go through without registering anything: one subject done by an
    earlier run (its raw T1w is broken, so redoing it would fail), one broken, one excluded."""
    raw = tmp_path / "raw"
    raw.mkdir()
    pd.DataFrame({"participant_id": ["sub-01"], "diagnosis": ["CONTROL"]}).to_csv(
        raw / "participants.tsv", sep="\t", index=False)
    (raw / "sub-01" / "anat").mkdir(parents=True)
    (raw / "sub-01" / "anat" / "sub-01_T1w.nii.gz").write_bytes(b"broken")
    _add_broken_and_excluded(raw)
    done = tmp_path / "out" / "sub-01" / "figures"
    done.mkdir(parents=True)
    (done / "sub-01_desc-qc.json").write_text(json.dumps(
        {"participant_id": "sub-01", "t1_corr": 0.9, "fa_corr": 0.7, "seconds": 1.0}))
    (tmp_path / "out" / ".sub-02-leftover").mkdir()  # what a killed run leaves
    return raw, tmp_path / "out"


def test_failing_subject_is_reported_done_subject_kept(tmp_path):
    raw, out = _raw_without_images(tmp_path)
    qc = prepare(raw, out, PrepareConfig(**CODING), progress=False).set_index("participant_id")
    assert qc.loc["sub-01", "status"] == "done before" and not qc.loc["sub-01", "flagged"]
    assert qc.loc["sub-02", "status"] == "failed"
    assert "sub-02_T1w.nii.gz" in qc.loc["sub-02", "error"]
    assert qc.loc["sub-03", "status"] == "excluded" and "BIPOLAR" in qc.loc["sub-03", "error"]
    assert qc.loc["sub-04", "status"] == "missing" and "no T1w" in qc.loc["sub-04", "error"]
    assert not (out / "sub-02").exists() and not list(out.glob(".sub-*"))
    written = pd.read_csv(out / "qc.tsv", sep="\t")
    assert written["status"].tolist() == ["done before", "failed", "excluded", "missing"]
    assert pd.read_csv(out / "participants.tsv", sep="\t")["participant_id"].tolist() == [
        "sub-01"]
    desc = json.loads((out / "dataset_description.json").read_text())
    assert {g["Name"] for g in desc["GeneratedBy"]} >= {"ANTsPy", "dipy", "nilearn"}


def test_cli_prepare_reports_failures(tmp_path, capsys):
    raw, out = _raw_without_images(tmp_path)
    assert main(["prepare", str(raw), str(out), "--group-column", "diagnosis", "--patients",
                 "SCHZ", "--controls", "CONTROL", "--quiet", "--jobs", "2"]) == 0
    text = capsys.readouterr().out
    assert "sub-02 failed: " in text and "sub-03 excluded: " in text
    assert "sub-04 missing: " in text
    assert "1 subjects with maps" in text
    with pytest.raises(SystemExit, match="--group-column"):
        main(["prepare", str(raw), str(out), "--quiet"])


def test_find_subjects_choices_and_errors(tmp_path):
    raw = tmp_path / "raw"
    (raw / "sub-01" / "anat").mkdir(parents=True)
    pd.DataFrame({"participant_id": ["sub-01"], "diagnosis": ["SCHZ"]}).to_csv(
        raw / "participants.tsv", sep="\t", index=False)
    with pytest.raises(PrepareError, match="'group'.*--group-column"):
        find_subjects(raw, PrepareConfig())
    cfg = PrepareConfig(**CODING)
    subjects, _ = find_subjects(raw, cfg)
    assert subjects[0].missing.startswith("no T1w image under ")
    for ses in ("1", "2"):
        f = raw / "sub-01" / f"ses-{ses}" / "anat" / f"sub-01_ses-{ses}_T1w.nii.gz"
        f.parent.mkdir(parents=True)
        f.write_bytes(b"")
    with pytest.raises(PrepareError, match=r"2 T1w files differ in ses.*--session"):
        find_subjects(raw, cfg)
    subjects, _ = find_subjects(raw, PrepareConfig(**{**CODING, "session": "2"}))
    assert subjects[0].t1w.name == "sub-01_ses-2_T1w.nii.gz" and subjects[0].dwi is None


@pytest.mark.slow
def test_modulation_preserves_tissue_volume(tmp_path):
    raw = write_raw(tmp_path / "raw", {"sub-01": "CONTROL"}, dwi=False)
    cfg = PrepareConfig(**{**CFG.__dict__, **CODING, "modulate": True})
    scratch = set(Path(tempfile.gettempdir()).iterdir())
    prepare(raw, tmp_path / "out", cfg, progress=False)
    # nothing left in the system's temporary folder (ANTs' Atropos names its own files there)
    assert not [p.name for p in set(Path(tempfile.gettempdir()).iterdir()) - scratch
                if p.name.startswith("antsr")]
    gm = nib.load(next((tmp_path / "out").rglob("*label-GM_probseg.nii.gz"))).get_fdata()
    # the subject is the template scaled by 1.05 per axis: 1/1.05^3 of the template's GM
    # volume in subject space, which modulation must give back
    template_gm = template_images(cfg.grid_mm)["gm"].get_fdata().sum()
    assert gm.sum() / template_gm == pytest.approx(1 / 1.05 ** 3, rel=0.1)


@pytest.mark.slow
def test_output_loads_as_a_cohort(prepared, tmp_path):
    """The derivatives layout is what Cohort.from_bids and load_map read (the subject's maps
    copied under four ids, two per group, as the loader wants both groups)."""
    from mri3dcnn.cohort import Cohort
    from mri3dcnn.volumes import load_map

    _, out, _, _ = prepared
    dst = tmp_path / "cohort"
    shutil.copytree(out, dst, ignore=shutil.ignore_patterns("sub-0[2345]*"))
    groups = {"sub-01": "control", "sub-05": "control", "sub-06": "patient", "sub-07": "patient"}
    for sid in list(groups)[1:]:
        for f in sorted((dst / "sub-01").rglob("*")):
            target = dst / sid / str(f.relative_to(dst / "sub-01")).replace("sub-01", sid)
            target.parent.mkdir(parents=True, exist_ok=True)
            if f.is_file():
                shutil.copy(f, target)
    pd.DataFrame({"participant_id": list(groups), "group": list(groups.values())}).to_csv(
        dst / "participants.tsv", sep="\t", index=False)
    cohort = Cohort.from_bids(dst, ["gm", "wm", "fa", "md"])
    assert len(cohort) == 4 and "simulated raw" in cohort.name
    fa = load_map(cohort, "fa", 8.0, tmp_path / "cache", progress=False)
    assert fa.shape[0] == 4 and 0.3 < float(np.asarray(fa).max()) <= 1.0


def test_simulated_signal_is_dipys_tensor_model():
    """The vectorised simulation equals dipy's single-tensor signal for each pure tissue."""
    from dipy.sims.voxel import single_tensor

    gtab = _gtab()
    for k, tissue in enumerate(("csf", "gm", "wm")):
        evals, s0 = TENSORS[tissue]
        probs = np.zeros((1, 3))
        probs[0, k] = 1.0
        expected = single_tensor(gtab, S0=s0, evals=np.array(evals) * 1e-3, evecs=np.eye(3))
        np.testing.assert_allclose(_signal(probs, gtab)[0], expected, rtol=1e-6)


#: the cheapest settings that still segment and register, for the end-to-end test below
E2E_CFG = PrepareConfig(**{**CFG.__dict__, **CODING, "grid_mm": 6.0, "reg_mm": 6.0,
                           "n4_shrink": 4, "n4_iterations": (20,)})


@pytest.mark.slow
def test_prepare_then_the_tiny_svm_study_end_to_end(tmp_path, monkeypatch, capsys):
    """Raw BIDS -> `prepare` -> `mri3dcnn cohort` -> chapter 2's SVMs cross-validated at the
    tiny profile on the prepared folder: every record holds one finite prediction per
    subject it scores, each cross-validation subject predicted once, by a model that did
    not train on it, and the independent site by every fold's model.

    Ten subjects: site A's eight make a 2-fold CV whose training halves hold two of each
    group (the least the SVMs' inner 2-fold search of C needs); site B's two are the
    independent set. nilearn's Decoder, whose own inner CV has three folds, would need
    three of each group per training half, and is left out."""
    from mri3dcnn.crossval import CHAPTER_SVM
    from mri3dcnn.study import Study

    monkeypatch.setenv("MRI3DCNN_HOME", str(tmp_path / "home"))
    groups = {f"sub-{i:02d}": "SCHZ" if i % 2 else "CONTROL" for i in range(1, 11)}
    raw = write_raw(tmp_path / "raw", groups, np.random.default_rng(1), dwi=False)
    table = pd.read_csv(raw / "participants.tsv", sep="\t")
    table["site"] = ["A"] * 8 + ["B"] * 2
    table.to_csv(raw / "participants.tsv", sep="\t", index=False)
    out = tmp_path / "prepared"
    qc = prepare(raw, out, E2E_CFG, progress=False)
    assert (qc["status"] == "prepared").all(), qc.to_dict("records")

    assert main(["cohort", str(out), "--maps", "gm", "wm"]) == 0
    text = capsys.readouterr().out
    assert "simulated raw: GM, WM, FA, MD maps: 10 subjects, maps gm+wm" in text

    study = Study.open({"extends": "tiny"}, out, tmp_path / "results", maps=("gm", "wm"))
    models = [m for m in study.svm_models(["gm", "wm"]) if m.spec.family != "nilearn_decoder"]
    for model in models:
        study.cross_validate(model)
    records = study.store.records(CHAPTER_SVM)
    assert len(records) == 2 * len(models)  # one per fold
    plan = study.plan
    cv_ids = sorted(plan.loc[plan["fold"] >= 0, "participant_id"])
    independent = sorted(plan.loc[plan["fold"] == -1, "participant_id"])
    assert len(cv_ids) == 8 and independent == ["sub-09", "sub-10"]
    for key in {(r.key["family"], "+".join(r.maps)) for r in records}:
        recs = [r for r in records if (r.key["family"], "+".join(r.maps)) == key]
        preds = pd.concat([r.predictions for r in recs])
        assert np.isfinite(preds["score"]).all(), key  # SVMs score by decision values
        assert sorted(preds.loc[preds["set"] == "cv", "participant_id"]) == cv_ids, key
        assert sorted(preds.loc[preds["set"] == "independent", "participant_id"]) == sorted(
            independent * len(recs)), key
        for r in recs:
            held_out = set(r.predictions.loc[r.predictions["set"] == "cv", "participant_id"])
            assert held_out and not held_out & set(r.key["config"]["train"]), key
