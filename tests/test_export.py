"""Exported models reproduce the stored predictions; predict checks what it is given."""

import json
import shutil

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from mri3dcnn.cli import main
from mri3dcnn.cohort import parse_bids_name
from mri3dcnn.derivatives import check_dataset
from mri3dcnn.export import ExportError, export_model, predict, select_records
from mri3dcnn.preprocessing import Normaliser

TOLERANCE = 1e-6
#: the columns of predictions.tsv, each described in its sidecar
COLUMNS = ["participant_id", "probability", "predicted_group", "resampled"]


def test_the_normalisation_layer_gives_the_normalisers_numbers(tmp_path):
    import keras

    rng = np.random.default_rng(3)
    arrays = {"gm": (rng.random((12, 5, 6, 7)) * 3).astype(np.float32)}
    arrays["gm"][:, 0] = 0.5  # a constant voxel: its spread comes from the floor
    norm = Normaliser().fit(arrays, np.arange(8))
    expected = norm.transform(arrays, np.arange(12))["gm"]
    inp = keras.Input((5, 6, 7, 1), name="gm")
    model = keras.Model(inp, norm.as_layer("gm")(inp))
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    got = np.asarray(loaded.predict(arrays["gm"][..., None], verbose=0))[..., 0]
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, expected)


@pytest.fixture(scope="module")
def fitted(tiny_cohort, tmp_path_factory):
    """A tiny study with one-epoch fits: both folds on grey matter, one fold of grey
    matter and FA as channels and one as branches."""
    from mri3dcnn.study import Study

    home = tmp_path_factory.mktemp("home")
    mp = pytest.MonkeyPatch()
    mp.setenv("MRI3DCNN_HOME", str(home))
    study = Study.open({"extends": "tiny", "epochs": 1}, tiny_cohort, home / "results",
                       maps=("gm", "fa"))
    study.fit_cnn("sequential_1", ("gm",))
    study.fit_cnn("sequential_1", ("gm", "fa"), fusion="channel", folds=[0])
    study.fit_cnn("sequential_1", ("gm", "fa"), fusion="branch", folds=[0])
    yield study
    mp.undo()


def _compare(table: pd.DataFrame, expected: pd.DataFrame) -> pd.DataFrame:
    both = expected.merge(table, on="participant_id", validate="one_to_one")
    assert len(both) == len(expected)
    assert np.abs(both["probability"] - both["score"]).max() <= TOLERANCE
    assert ((both["predicted_group"] == "patient") == (both["pred"] == 1)).all()
    return both


@pytest.mark.parametrize(("maps", "fusion"), [(("gm",), None), (("gm", "fa"), "channel"),
                                              (("gm", "fa"), "branch")])
def test_a_fold_model_exported_then_applied_reproduces_its_stored_scores(
        fitted, tiny_cohort, tmp_path, maps, fusion):
    rec = select_records(fitted.store, "sequential_1", maps, fusion, fold=0)
    folder = export_model(rec, tmp_path / "model", n_boot=50)
    table = predict(folder, tiny_cohort, tmp_path / "out")
    assert list(table.participant_id) == fitted.ids and table.attrs["notes"] == []
    stored = rec[0].predictions
    both = _compare(table, stored)
    assert set(both.set) == {"cv", "independent"}
    written = pd.read_csv(tmp_path / "out" / "predictions.tsv", sep="\t",
                          dtype={"participant_id": str})
    assert list(written.columns) == COLUMNS and written["resampled"].isna().all()
    _compare(written, stored)
    sidecar = json.loads((tmp_path / "out" / "predictions.json").read_text())
    assert list(sidecar) == COLUMNS and all(c["Description"] for c in sidecar.values())
    desc = json.loads((tmp_path / "out" / "dataset_description.json").read_text())
    assert desc["DatasetType"] == "derivative" and "+".join(maps) in desc["Name"]
    assert check_dataset(tmp_path / "out") == []


def test_the_fold_ensemble_scores_the_independent_site_as_the_study_does(
        fitted, tiny_cohort, tmp_path):
    recs = select_records(fitted.store, "sequential_1", ["gm"])
    assert len(recs) == 2
    folder = export_model(recs, tmp_path / "ensemble", n_boot=50)
    table = predict(folder, tiny_cohort, tmp_path / "p")
    preds = pd.concat([r.predictions for r in recs])
    indep = preds[preds.set == "independent"].groupby("participant_id", as_index=False).agg(
        score=("score", "mean"))
    indep["pred"] = (indep["score"] > 0.5).astype(int)
    _compare(table, indep)

    desc = json.loads((folder / "study.json").read_text())
    assert desc["maps"] == ["gm"] and desc["folds"] == [0, 1] and desc["ensemble"]
    assert desc["grid_mm"] == 8.0 and desc["cohort"] == fitted.fingerprint
    assert desc["n_subjects"] == len(fitted.ids)
    card = (folder / "MODEL_CARD.md").read_text()
    assert "not a medical device" in card and fitted.fingerprint in card
    assert "| cross-validation (held-out folds) | 16 |" in card
    assert "| independent site (never trained on) | 8 |" in card


def test_export_and_predict_from_the_command_line_with_saliency(fitted, tiny_cohort, tmp_path,
                                                                 capsys):
    results = str(fitted.store.root)
    main(["export", str(tmp_path / "m"), "--family", "sequential_1", "--maps", "gm",
          "--fold", "1", "--results", results])
    assert "fold 1" in capsys.readouterr().out
    out = tmp_path / "pred"
    main(["predict", str(tmp_path / "m"), str(tiny_cohort), "--out", str(out), "--saliency"])
    assert f"{out / 'predictions.tsv'}: 24 subjects" in capsys.readouterr().out
    sub = fitted.ids[0]
    maps = sorted((out / sub / "anat").glob("*_saliency.nii.gz"))
    assert [p.name for p in maps] == [
        f"{sub}_space-MNI152NLin2009aSym_res-8mm_desc-gradientGM_saliency.nii.gz"]
    assert parse_bids_name(maps[0].name)[0] == {
        "sub": sub.removeprefix("sub-"), "space": "MNI152NLin2009aSym", "res": "8mm",
        "desc": "gradientGM"}
    img = nib.load(maps[0])
    assert img.shape == fitted.mask.shape and np.abs(img.get_fdata()).max() > 0
    side = json.loads(maps[0].with_name(maps[0].name.replace(".nii.gz", ".json")).read_text())
    assert side["Method"] == "gradient" and side["Map"] == "gm" and side["Folds"] == [1]
    assert check_dataset(out) == []
    assert len(list(out.rglob("*_saliency.nii.gz"))) == len(fitted.ids)
    with pytest.raises(SystemExit, match=r"the output is a folder .* use .*pred"):
        main(["predict", str(tmp_path / "m"), str(tiny_cohort), "--out", str(out) + ".tsv"])
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(SystemExit, match="is not an output of predict"):
        main(["predict", str(tmp_path / "m"), str(tiny_cohort), "--out",
              str(tmp_path / "mine")])
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"
    with pytest.raises(SystemExit, match="no stored fold 5 of sequential_1 on gm; stored "
                                         r"folds: \[0, 1\]"):
        main(["export", str(tmp_path / "x"), "--family", "sequential_1", "--fold", "5",
              "--results", results])
    with pytest.raises(SystemExit, match=r"no stored inception_1 on gm .*Stored CNNs: "):
        main(["export", str(tmp_path / "x"), "--family", "inception_1", "--results", results])


def test_a_missing_map_names_the_subject_the_folder_and_the_fix(fitted, tiny_cohort,
                                                                 tmp_path):
    folder = export_model(select_records(fitted.store, "sequential_1", ["gm", "fa"],
                                         "channel"), tmp_path / "m", n_boot=10)
    cohort = tmp_path / "cohort"
    shutil.copytree(tiny_cohort, cohort)
    sub = fitted.ids[3]
    for f in (cohort / sub).rglob("*param-FA*"):
        f.unlink()
    with pytest.raises(ExportError, match=rf"Subject {sub}: no fa map under .*{sub}; the "
                                          r"model needs gm\+fa. Add dwi/"):
        predict(folder, cohort, tmp_path / "p")
    assert not (tmp_path / "p").exists()


def test_maps_on_another_grid_are_resampled_with_a_note(fitted, tiny_cohort, tmp_path):
    from nilearn import image

    folder = export_model(select_records(fitted.store, "sequential_1", ["gm"], fold=0),
                          tmp_path / "m", n_boot=10)
    sub = fitted.ids[0]
    cohort = tmp_path / "cohort"
    shutil.copytree(tiny_cohort / sub, cohort / sub)
    pd.DataFrame({"participant_id": [sub]}).to_csv(cohort / "participants.tsv", sep="\t",
                                                   index=False)
    (gm,) = (cohort / sub).rglob("*label-GM*_probseg.nii*")
    image.resample_img(nib.load(gm), target_affine=np.diag([6.0, 6.0, 6.0]),
                       interpolation="continuous", force_resample=True,
                       copy_header=True).to_filename(gm)
    table = predict(folder, cohort, tmp_path / "p")
    (note,) = table.attrs["notes"]
    assert str(gm) in note and "resampled to the model's" in note
    assert 0.0 <= table.probability.iloc[0] <= 1.0
    written = pd.read_csv(tmp_path / "p" / "predictions.tsv", sep="\t")
    assert list(written["resampled"]) == ["gm"]
