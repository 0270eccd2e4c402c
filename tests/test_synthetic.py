"""The synthetic cohort: BIDS layout, determinism, calibrated effects, the null cohort,
deformations, and the truth it saves."""

import json

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from scipy import ndimage

from mri3dcnn.cohort import Cohort
from mri3dcnn.splits import make_split_plan
from mri3dcnn.synthetic import (
    DEFAULT_EFFECTS,
    Confounds,
    Effects,
    generate_cohort,
    load_effects,
    oracle_table,
    planted_masks,
    read_latent,
    read_truth,
    realised_d_table,
    voxelwise_d,
)
from mri3dcnn.synthetic.anatomy import displacement_field, jacobian_determinant
from mri3dcnn.synthetic.effects import draw_strengths
from mri3dcnn.synthetic.generator import assign_subjects
from mri3dcnn.volumes import brain_mask, load_maps, voxelwise_ttest


def test_layout_and_participants(tiny_cohort):
    p = pd.read_csv(tiny_cohort / "participants.tsv", sep="\t")
    assert list(p.columns) == ["participant_id", "group", "site", "age", "sex"]
    assert len(p) == 24 and p.participant_id.is_unique
    assert set(p.group) == {"patient", "control"}
    # groups balanced within each site
    assert (p.groupby("site").group.value_counts().unstack().diff(axis=1).abs().iloc[:, -1]
            <= 1).all()
    sub = p.participant_id[0]
    gm = list((tiny_cohort / sub / "anat").glob("*_label-GM_probseg.nii.gz"))
    fa = list((tiny_cohort / sub / "dwi").glob("*_model-DTI_param-FA_dwimap.nii.gz"))
    assert len(gm) == 1 and len(fa) == 1
    img = nib.load(gm[0])
    assert img.shape == (23, 28, 23)
    np.testing.assert_allclose(img.affine[:3, 3], (-90, -126, -72))
    desc = json.loads((tiny_cohort / "dataset_description.json").read_text())
    assert desc["DatasetType"] == "derivative"


#: what a BIDS(-derivatives) dataset root may hold besides subject folders
BIDS_ROOT_FILES = {"dataset_description.json", "participants.tsv", "participants.json",
                   ".bidsignore", "README", "CHANGES"}


def test_files_outside_subject_folders_are_bids_or_ignored_by_validators(tiny_cohort):
    """The truth is not subject data: it sits under a folder `.bidsignore` lists, so a BIDS
    validator skips it; nothing else lies outside the subjects' folders."""
    ignored = [line.strip().rstrip("/") for line in
               (tiny_cohort / ".bidsignore").read_text().splitlines() if line.strip()]
    assert "ground_truth" in ignored and (tiny_cohort / "ground_truth" / "truth.json").exists()
    stray = [str(p.relative_to(tiny_cohort)) for p in tiny_cohort.rglob("*") if p.is_file()
             and p.relative_to(tiny_cohort).parts[0] not in ignored
             and not p.relative_to(tiny_cohort).parts[0].startswith("sub-")
             and p.name not in BIDS_ROOT_FILES]
    assert stray == []


def test_truth_is_saved(tiny_cohort):
    t = read_truth(tiny_cohort)
    assert len(t["effects"]["regions"]) == len(DEFAULT_EFFECTS.regions)
    assert 0.0 <= t["oracle_accuracy"] <= 1.0
    # the Bayes ceiling of region means can never beat the strict bound
    assert 0.5 <= t["bayes_ceiling"]["balanced_accuracy"] <= t["strict_bound"]["balanced_accuracy"]
    assert t["ceiling_accuracy"] == pytest.approx(1 - 0.5 * DEFAULT_EFFECTS.p_unaffected)
    masks = planted_masks(tiny_cohort)
    assert set(masks) == {r.map for r in DEFAULT_EFFECTS.regions}
    assert all(m.any() for by_map in masks.values() for m in by_map.values())
    table = realised_d_table(tiny_cohort)
    assert list(table["region"]) == [r.name for r in DEFAULT_EFFECTS.regions]
    assert (table["CI low"] < table["realised d"]).all()
    assert (table["realised d"] < table["CI high"]).all()
    latent = read_latent(tiny_cohort)
    p = pd.read_csv(tiny_cohort / "participants.tsv", sep="\t")
    assert ((latent["pattern"] == "control") == (p["group"] == "control")).all()


def test_oracle_on_the_study_plan(tiny_cohort):
    p = pd.read_csv(tiny_cohort / "participants.tsv", sep="\t")
    plan = make_split_plan(p, 2, 2, seed=1)
    table = oracle_table(tiny_cohort, plan)
    oracle = table.set_index("row")
    # subjects counted once, whatever the number of repeats
    assert oracle.loc["oracle (cv)", "n"] == (plan[plan.repeat == 0].fold >= 0).sum()
    assert oracle.loc["oracle (independent)", "n"] == (plan[plan.repeat == 0].fold < 0).sum()
    assert {"Bayes ceiling", "strict bound"} <= set(table["row"])
    assert table["what"].str.len().gt(20).all()


def test_same_seed_same_cohort(tmp_path):
    kw = dict(grid_mm=10.0, progress=False, calibration_subjects=40)
    a = generate_cohort(tmp_path / "a", 8, seed=3, **kw)
    b = generate_cohort(tmp_path / "b", 8, seed=3, **kw)
    c = generate_cohort(tmp_path / "c", 8, seed=4, **kw)
    f = "sub-001/anat/sub-001_space-MNI152NLin2009aSym_res-10mm_label-GM_probseg.nii.gz"
    va, vb, vc = (np.asarray(nib.load(x / f).dataobj) for x in (a, b, c))
    np.testing.assert_array_equal(va, vb)
    assert not np.array_equal(va, vc)


def test_null_cohort_has_no_effect(tmp_path):
    """Every region's realised d is within sampling error of 0 (|z| < 3.5, 13 regions)."""
    root = generate_cohort(tmp_path / "null", 200, seed=5, grid_mm=10.0, null=True,
                           progress=False)
    t = read_truth(root)
    assert t["null"] and not any(t["calibration"]["amplitude"])
    table = realised_d_table(root)
    assert (table["target d"] == 0).all()
    se = (table["CI high"] - table["CI low"]) / (2 * 1.96)
    assert (np.abs(table["realised d"]) / se).max() < 3.5
    assert t["bayes_ceiling"]["balanced_accuracy"] == 0.5
    assert t["strict_bound"]["balanced_accuracy"] == 0.5


@pytest.mark.parametrize("grid_mm", [3.0, 6.0])
def test_deformation_matches_its_settings(grid_mm):
    brain = brain_mask(grid_mm)
    rng = np.random.default_rng(0)
    spread = {}
    for disp in (1.5, 3.0):
        field = displacement_field(brain.shape, grid_mm, rng, disp, 20.0, brain)
        rms_mm = np.sqrt((field[:, brain] ** 2).sum(axis=0).mean()) * grid_mm
        assert rms_mm == pytest.approx(disp, rel=1e-3)
        jac = jacobian_determinant(field)[brain]
        assert jac.min() > 0, "the deformation folds"
        lo, hi = np.percentile(jac, [1, 99])
        # volume change stays within 1 +- 4 x displacement / control spacing (Anatomy)
        bound = 4 * disp / 20
        assert lo > 1 - bound and lo < 1 < hi and hi < 1 + bound
        spread[disp] = jac.std()
    # Jacobian spread scales with the displacement
    assert spread[3.0] / spread[1.5] == pytest.approx(2.0, rel=0.15)


def test_patients_are_heterogeneous():
    s, pattern = draw_strengths(DEFAULT_EFFECTS, 400, np.random.default_rng(0), stratified=True)
    assert (pattern == -1).sum() == round(0.25 * 400)
    assert (s[pattern == -1] == 0).all()
    assert len(set(pattern[pattern >= 0])) == len(DEFAULT_EFFECTS.subtypes)
    # patterns differ: the subcortical one loads the hippocampus more than the cortical one
    names = [p.name for p in DEFAULT_EFFECTS.subtypes]
    h = [r.name for r in DEFAULT_EFFECTS.regions].index("hippocampus")
    assert (s[pattern == names.index("subcortical"), h].mean()
            > 2 * s[pattern == names.index("cortical"), h].mean())


def test_confounds_are_off_by_default_and_named():
    sites = [{"site": f"site{k}"} for k in "ABC"]
    rng = np.random.default_rng(0)
    plain = assign_subjects(600, sites, DEFAULT_EFFECTS, rng)
    share = plain.groupby("site").group.apply(lambda g: (g == "patient").mean())
    assert share.max() - share.min() < 0.02
    tilted = Effects(DEFAULT_EFFECTS.regions, confounds=Confounds(site_imbalance=0.3,
                                                                  age_difference_years=8))
    conf = assign_subjects(600, sites, tilted, rng)
    share = conf.groupby("site").group.apply(lambda g: (g == "patient").mean())
    assert share["siteA"] - share["siteC"] == pytest.approx(0.6, abs=0.02)
    age = conf.groupby("group").age.mean()
    assert age["patient"] - age["control"] > 5


def test_voxelwise_d():
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 500)
    vols = rng.standard_normal((1000, 3, 3, 3))
    vols[y == 1, 0, 0, 0] += 0.5
    d = voxelwise_d(vols, y)
    assert d[0, 0, 0] == pytest.approx(0.5, abs=0.15)
    assert np.abs(d.ravel()[1:]).max() < 0.25


def test_effects_file(tmp_path):
    f = tmp_path / "effects.yaml"
    f.write_text("p_unaffected: 0.0\nregions:\n  - {name: hippocampus_L, map: gm, "
                 "centers: [[-26, -20, -14]], radius_mm: 10, d: -0.5}\n")
    eff = load_effects(f)
    assert eff.p_unaffected == 0.0 and eff.regions[0].name == "hippocampus_L"
    assert eff.regions[0].tissue == "gm" and not eff.regions[0].diffuse
    assert eff.null().regions[0].d == 0.0
    f.write_text("regions:\n  - {name: x, map: t1, d: 1}\n")
    with pytest.raises(ValueError, match="not one of"):
        load_effects(f)
    f.write_text("regions:\n  - {name: x, map: gm, center: [0, 0, 0], effect: -0.3}\n")
    with pytest.raises(ValueError, match="'effect'.*is now 'd'"):
        load_effects(f)
    f.write_text("regions:\n  - {name: x, map: gm, d: -0.3}\nsubtypes:\n  - {name: a, "
                 "share: 1, loadings: {y: 1}}\n")
    with pytest.raises(ValueError, match="unknown regions"):
        load_effects(f)
    f.write_text("just: words\n")
    with pytest.raises(ValueError, match="regions"):
        load_effects(f)


@pytest.fixture(scope="module")
def large_cohort(tmp_path_factory):
    """800 subjects at 8 mm with the default effects."""
    return generate_cohort(tmp_path_factory.mktemp("large") / "c", 800, seed=2020,
                           grid_mm=8.0, progress=False)


@pytest.mark.slow
def test_realised_d_matches_target(large_cohort):
    """At n = 800 one region's d has a sampling s.e. of about 0.07: every region within
    0.2 of its target (about 3 s.e.), the typical region within 0.1, and no bias in sum."""
    table = realised_d_table(large_cohort)
    err = table["realised d"] - table["target d"]
    assert err.abs().max() < 0.2, table
    assert err.abs().median() < 0.1, table
    assert abs(err.mean()) < 0.05, table


@pytest.mark.slow
def test_planted_regions_are_where_the_groups_differ(tmp_path):
    """With the focal regions only, at 2.5 times their d (600 subjects), a voxel-wise t-test
    peaks inside every planted region, above its surround, and far from all regions the
    groups differ no more than chance allows. (At the default d a diffuse grey-matter
    reduction lifts t everywhere in grey matter, and the smallest regions need thousands of
    subjects to stand out voxel by voxel.)"""
    focal = Effects(tuple(r for r in DEFAULT_EFFECTS.regions if not r.diffuse),
                    p_unaffected=DEFAULT_EFFECTS.p_unaffected).scaled(2.5)
    root = generate_cohort(tmp_path / "c", 600, seed=7, grid_mm=8.0, effects=focal,
                           progress=False)
    cohort = Cohort.from_bids(root)
    masks = planted_masks(root)
    arrays = load_maps(cohort, list(masks), 8.0, tmp_path / "cache", progress=False)
    brain = brain_mask(8.0)
    for m, regions in masks.items():
        t = voxelwise_ttest(arrays[m], cohort.labels)
        union = np.any(list(regions.values()), axis=0)
        near = ndimage.binary_dilation(union, iterations=1)
        for name, inside in regions.items():
            peak = np.abs(t[inside]).max()
            shell = (ndimage.binary_dilation(inside, iterations=3) & ~near & brain)
            assert peak > 3.5, f"{m} {name}: peak |t| {peak:.2f} inside the planted region"
            assert peak > np.abs(t[shell]).max(), f"{m} {name}: the peak is outside"
        far = brain & ~ndimage.binary_dilation(union, iterations=2)
        share = float((np.abs(t[far]) > 2.6).mean())
        assert share < 0.03, f"{m}: {share:.3f} of voxels far from planted regions differ"


def test_linearity_measures_the_change_clipping_takes_away():
    """A change far past the tissue bound (grey matter taken 30 times over at the
    region's centre) is clipped at zero, so patients get a small part of what the slope
    promises; a small change gets what a linear slope promises."""
    from mri3dcnn.synthetic import anatomy as an
    from mri3dcnn.synthetic import generator as g

    eff = Effects(tuple(r for r in DEFAULT_EFFECTS.regions if r.name == "hippocampus"),
                  p_unaffected=0.0)
    rng = np.random.default_rng(0)
    st = g._setting(eff, 10.0, an.Anatomy(), g._sites(1, rng))
    slope = np.ones((1, 1)) * 0.2
    small = g._linearity(st, np.array([-0.01]), slope, np.random.default_rng(1), n=6)
    huge = g._linearity(st, np.array([-30.0]), slope, np.random.default_rng(1), n=6)
    assert huge[0] < 0.5 * small[0]
    assert st.amplitude[0] == 0.0  # restored
