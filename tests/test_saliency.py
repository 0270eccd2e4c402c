"""Saliency methods on a model whose answer is known, and the localisation scores."""

import numpy as np
import pytest

from mri3dcnn import saliency as sal

GRID = (10, 12, 10)


@pytest.fixture(scope="module")
def toy():
    """A model whose patient score depends only on the voxels of one cube."""
    import keras
    from keras import layers

    keras.utils.set_random_seed(0)
    region = np.zeros(GRID, bool)
    region[2:5, 3:6, 2:5] = True
    weights = region.astype("float32")[..., None]
    inp = keras.Input((*GRID, 1), name="gm")
    h = layers.Conv3D(2, 1, name="gm_conv", kernel_initializer="ones")(inp)
    h = layers.Lambda(lambda t: t * weights, name="gm_region")(h)
    h = layers.GlobalAveragePooling3D()(h)
    out = layers.Dense(2, activation="sigmoid", kernel_initializer="ones")(h)
    model = keras.Model(inp, out)
    x = {"gm": np.random.default_rng(0).standard_normal((3, *GRID)).astype("float32")}
    return model, x, region


@pytest.mark.parametrize("method", ["gradient", "smoothgrad", "integrated_gradients",
                                    "occlusion"])
def test_methods_find_the_region(toy, method):
    model, x, region = toy
    brain = np.ones(GRID, bool)
    out = sal.compute(method, model, x, ["gm"], brain)["gm"]
    assert out.shape == (3, *GRID)
    score = sal.localization(np.abs(out).mean(axis=0), region, brain)
    assert score["auc"] > 0.95, score
    if method != "occlusion":  # the cube straddles the region's edges
        assert score["top1pct_inside"] == 1.0


def test_gradcam_shape_and_sign(toy):
    model, x, _ = toy
    cam = sal.gradcam(model, x, ["gm"])["gm"]
    assert cam.shape == (3, *GRID) and (cam >= 0).all()


def test_localization_chance_and_perfect():
    rng = np.random.default_rng(0)
    truth = np.zeros(GRID, bool)
    truth[:3] = True
    brain = np.ones(GRID, bool)
    perfect = sal.localization(truth.astype(float) + 0.01 * rng.random(GRID), truth, brain)
    assert perfect["auc"] == 1.0 and perfect["top1pct_inside"] == 1.0
    noise = sal.localization(rng.random(GRID), truth, brain)
    assert 0.35 < noise["auc"] < 0.65
    assert noise["chance_share"] == pytest.approx(truth.mean())


def test_randomisation_check_changes_the_maps(toy):
    import keras

    from mri3dcnn.models import build

    _, x, _ = toy
    keras.utils.set_random_seed(1)
    model = build("sequential_1", ["gm"], GRID)
    before = [w.copy() for w in model.get_weights()]
    brain = np.ones(GRID, bool)
    rand = sal.randomisation_check(model, x, ["gm"], ["gradient", "gradcam"], brain)
    assert set(rand.columns) >= {"method", "layers_randomised", "rank_correlation"}
    assert rand.layers_randomised.max() == 3  # conv, dense128, output: all checkpoints
    last = rand[rand.layers_randomised == 3]
    assert (last.rank_correlation < 0.9).all(), last
    for a, b in zip(before, model.get_weights(), strict=True):  # trained weights restored
        np.testing.assert_array_equal(a, b)


def test_unknown_method(toy):
    model, x, _ = toy
    with pytest.raises(ValueError, match="Unknown saliency method"):
        sal.compute("lime", model, x, ["gm"])


def test_sanity_rule_is_the_named_threshold():
    """A method passes only when both correlations stay under the documented threshold."""
    t = sal.SANITY_MAX_CORRELATION
    assert 0 < t < 1
    assert sal.passes_sanity(t - 0.01, -0.2)
    assert not sal.passes_sanity(t, 0.0)  # at the threshold is not below it
    assert not sal.passes_sanity(0.1, t + 0.2)


def test_sanity_checks_table(toy):
    model, x = toy[:2]
    mask = np.ones(x["gm"].shape[1:], bool)
    rand = sal.randomisation_check(model, x, ["gm"], ["gradient"], mask, n_steps=2)
    table = sal.sanity_checks(model, x, model, x, ["gm"], ["gradient"], mask, rand)
    row = table.iloc[0]
    assert row["r vs shuffled-label model"] == pytest.approx(1.0)  # the same model
    assert not row["passes"]


def test_localisation_table_scores_each_family_and_method():
    brain = np.ones((6, 6, 6), bool)
    planted = {"r": np.zeros((6, 6, 6), bool)}
    planted["r"][1:3, 1:3, 1:3] = True
    assert sal.localisation_table({}, {}, brain, 8.0).empty
    good = planted["r"].astype(np.float32) + 0.01
    group = {"fam": {"gradient": {"gm": good}, "gradcam": {"gm": 1 - good}}}
    from unittest import mock

    top = sal.pd.DataFrame({"planted": ["r"], "atlas_region": ["x"], "in_top5": [True]})
    with mock.patch.object(sal, "planted_in_top_regions", return_value=top):
        loc = sal.localisation_table(group, planted, brain, 8.0)
    assert loc.set_index("method").loc["gradient", "auc"] == 1.0
    assert loc.set_index("method").loc["gradcam", "auc"] == 0.0
    assert (loc["planted_in_top5_regions"] == 1.0).all()


def _stored_fit(root, name, x, preds, repeat, fold):
    """A results-store record of a small trained-looking net on grey matter."""
    import keras
    from keras import layers

    from mri3dcnn.preprocessing import Normaliser
    from mri3dcnn.results import Record

    keras.utils.set_random_seed(fold)
    inp = keras.Input((*GRID, 1), name="gm")
    h = layers.Conv3D(2, 3, padding="same", name="gm_conv")(inp)
    out = layers.Dense(2, activation="softmax")(layers.GlobalAveragePooling3D()(h))
    path = root / name
    path.mkdir()
    keras.Model(inp, out).save(path / "model.keras")
    Normaliser().fit(x, np.arange(len(x["gm"]))).save(path / "normaliser.npz")
    preds.to_csv(path / "predictions.tsv", sep="\t", index=False)
    key = {"chapter": "cnn", "family": "toy", "maps": ["gm"], "fusion": "none",
           "protocol": "inner", "variant": "none", "fold": fold, "repeat": repeat}
    return Record(key=key, path=path, info={"hash": name})


@pytest.fixture(scope="module")
def saliency_dataset(tmp_path_factory):
    """Group maps of two stored fits (two repeats that both held out sub-01) written as a
    dataset; the returned maps, the folder and the subjects' maps kept in memory."""
    import pandas as pd

    root = tmp_path_factory.mktemp("sal")
    ids = ["sub-01", "sub-02", "sub-03"]
    x = {"gm": np.random.default_rng(1).random((3, *GRID)).astype("float32")}
    preds = pd.DataFrame({"participant_id": ids, "set": "cv", "y_true": [1, 1, 0],
                          "score": [0.9, 0.8, 0.2], "pred": [1, 1, 0]})
    records = [_stored_fit(root, "a", x, preds, 0, 0),
               _stored_fit(root, "b", x, preds[preds.participant_id != "sub-02"], 1, 0)]
    mask = np.ones(GRID, bool)
    out = sal.group_maps(records, x, ids, ["gradient", "integrated_gradients"], mask,
                         save_dir=root / "saliency" / "toy", grid_mm=8.0,
                         sources=(root,))
    single = {}
    for rec in records:
        model, norm = sal.load_fit(rec)
        z = norm.transform(x, np.array([0]))
        single[rec.info["hash"]] = sal.gradient(model, z, ["gm"])["gm"][0]
    return out, root / "saliency" / "toy", single


def test_saliency_maps_are_a_bids_derivatives_dataset(saliency_dataset):
    import json

    import nibabel as nib

    from mri3dcnn.cohort import parse_bids_name
    from mri3dcnn.derivatives import check_dataset

    out, root, single = saliency_dataset
    assert check_dataset(root) == []
    desc = json.loads((root / "dataset_description.json").read_text())
    assert desc["DatasetType"] == "derivative"
    assert desc["GeneratedBy"][0]["Name"] == "mri3dcnn" and desc["GeneratedBy"][0]["Version"]
    assert desc["SourceDatasets"][0]["URL"].startswith("file://")
    subject = sorted(p.name for p in (root / "sub-01" / "anat").glob("*.nii.gz"))
    assert subject == [f"sub-01_space-MNI152NLin2009aSym_res-8mm_desc-{d}GM_saliency.nii.gz"
                       for d in ("gradient", "integratedGradients")]
    assert parse_bids_name(subject[0]) == (
        {"sub": "01", "space": "MNI152NLin2009aSym", "res": "8mm", "desc": "gradientGM"},
        "saliency", ".nii.gz")
    assert not list(root.glob("sub-03"))  # a control is never explained
    group = root / "space-MNI152NLin2009aSym_res-8mm_desc-gradientGM_saliency.nii.gz"
    np.testing.assert_allclose(nib.load(group).get_fdata(), out["gradient"]["gm"], rtol=1e-6)
    side = json.loads(group.with_name(group.name.replace(".nii.gz", ".json")).read_text())
    assert side["Method"] == "gradient" and side["Map"] == "gm" and side["Model"] == "toy"
    assert side["Units"] and side["Values"].startswith("mean over subjects")
    assert [r["Repeat"] for r in side["Records"]] == [0, 1]


def test_a_subject_held_out_in_two_repeats_gets_the_mean_of_its_maps(saliency_dataset):
    import json

    import nibabel as nib

    _, root, single = saliency_dataset
    name = "sub-01_space-MNI152NLin2009aSym_res-8mm_desc-gradientGM_saliency"
    got = nib.load(root / "sub-01" / "anat" / f"{name}.nii.gz").get_fdata()
    np.testing.assert_allclose(got, (single["a"] + single["b"]) / 2, rtol=1e-5, atol=1e-9)
    side = json.loads((root / "sub-01" / "anat" / f"{name}.json").read_text())
    assert [r["Record"] for r in side["Records"]] == ["a", "b"]
    one = json.loads((root / "sub-02" / "anat" / f"{name.replace('01', '02')}.json")
                     .read_text())
    assert [r["Record"] for r in one["Records"]] == ["a"]


def test_check_dataset_names_a_missing_or_broken_sidecar(saliency_dataset, tmp_path):
    import shutil

    from mri3dcnn.derivatives import check_dataset

    _, root, _ = saliency_dataset
    copy = tmp_path / "copy"
    shutil.copytree(root, copy)
    side = next((copy / "sub-01" / "anat").glob("*.json"))
    side.unlink()
    assert check_dataset(copy) == [f"sub-01/anat/{side.with_suffix('.nii.gz').name}: its "
                                   f"sidecar {side.name} is missing"]
    side.write_text("{not json")
    assert "is not valid JSON" in check_dataset(copy)[0]
    (copy / "dataset_description.json").write_text('{"Name": "x", "BIDSVersion": "1.9.0"}')
    problems = check_dataset(copy)
    assert any("DatasetType is None" in p for p in problems)
    assert any("GeneratedBy" in p for p in problems)


def test_a_stored_modern_fit_loads_in_a_fresh_process(tmp_path):
    """A process that imports only the saliency module can load a stored SFCN: its fused
    batch norm is registered by the loader, not by whatever the process imported before."""
    import os
    import subprocess
    import sys

    from mri3dcnn.models import build
    from mri3dcnn.preprocessing import Normaliser

    build("sfcn", ["gm"], (21, 25, 21), compile=False).save(tmp_path / "model.keras")
    arrays = {"gm": np.random.default_rng(0).random((4, 21, 25, 21), dtype=np.float32)}
    Normaliser().fit(arrays, np.arange(4)).save(tmp_path / "normaliser.npz")
    code = ("from mri3dcnn.results import Record; from mri3dcnn.saliency import load_fit; "
            f"model, _ = load_fit(Record({{}}, {str(tmp_path)!r}, {{}})); "
            "print(type(model.get_layer('gm_block1_bn')).__name__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().endswith("FusedBatchNormalization")
