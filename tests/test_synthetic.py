"""The synthetic cohort: BIDS layout, determinism, and planted effects where they belong."""

import json

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from scipy import ndimage

from mri3dcnn.cohort import Cohort
from mri3dcnn.synthetic import (
    DEFAULT_EFFECTS,
    generate_cohort,
    load_effects,
    planted_masks,
    read_truth,
)
from mri3dcnn.volumes import load_maps, voxelwise_ttest


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


def test_truth_is_saved(tiny_cohort):
    t = read_truth(tiny_cohort)
    assert len(t["effects"]["regions"]) == len(DEFAULT_EFFECTS.regions)
    assert 0.0 <= t["oracle_accuracy"] <= 1.0
    assert t["ceiling_accuracy"] <= 1.0
    masks = planted_masks(tiny_cohort)
    assert set(masks) == {"gm", "fa"}
    assert all(m.any() for by_map in masks.values() for m in by_map.values())


def test_same_seed_same_cohort(tmp_path):
    a = generate_cohort(tmp_path / "a", 8, seed=3, grid_mm=10.0, progress=False)
    b = generate_cohort(tmp_path / "b", 8, seed=3, grid_mm=10.0, progress=False)
    c = generate_cohort(tmp_path / "c", 8, seed=4, grid_mm=10.0, progress=False)
    f = "sub-001/anat/sub-001_space-MNI152NLin2009aSym_res-10mm_label-GM_probseg.nii.gz"
    va, vb, vc = (np.asarray(nib.load(x / f).dataobj) for x in (a, b, c))
    np.testing.assert_array_equal(va, vb)
    assert not np.array_equal(va, vc)


def test_planted_regions_are_where_the_groups_differ(tmp_path):
    """A voxel-wise t-test peaks inside every planted region, and outside them (away from
    their edges) the groups differ no more than chance allows."""
    root = generate_cohort(tmp_path / "c", 160, seed=7, grid_mm=8.0, progress=False)
    cohort = Cohort.from_bids(root, ["gm", "fa"])
    arrays = load_maps(cohort, ["gm", "fa"], 8.0, tmp_path / "cache", progress=False)
    from mri3dcnn.volumes import brain_mask

    brain = brain_mask(8.0)
    for m, regions in planted_masks(root).items():
        t = voxelwise_ttest(arrays[m], cohort.labels)
        union = np.zeros(brain.shape, bool)
        for name, inside in regions.items():
            union |= inside
            peak = np.abs(t[inside]).max()
            assert peak > 4.0, f"{m} {name}: peak |t| {peak:.2f} inside the planted region"
        far = brain & ~ndimage.binary_dilation(union, iterations=2)
        # two-sided p < 0.01 at df ~ 158 is |t| > 2.6; allow for smooth noise
        share = float((np.abs(t[far]) > 2.6).mean())
        assert share < 0.03, f"{m}: {share:.3f} of voxels far from planted regions differ"


def test_effects_file(tmp_path):
    f = tmp_path / "effects.yaml"
    f.write_text("p_unaffected: 0.0\nregions:\n  - {name: hippocampus_L, map: gm, "
                 "center: [-26, -20, -14], radius_mm: 10, effect: -0.5}\n")
    eff = load_effects(f)
    assert eff.p_unaffected == 0.0 and eff.regions[0].name == "hippocampus_L"
    f.write_text("regions:\n  - {name: x, map: t1, center: [0, 0, 0], radius_mm: 5, "
                 "effect: 1}\n")
    with pytest.raises(ValueError, match="not one of"):
        load_effects(f)
    f.write_text("just: words\n")
    with pytest.raises(ValueError, match="regions"):
        load_effects(f)
