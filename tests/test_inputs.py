"""Bad inputs fail loudly, naming the subject, the file and the fix."""

import shutil

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from mri3dcnn.cohort import Cohort, CohortError
from mri3dcnn.volumes import VolumeError, load_map


@pytest.fixture
def cohort_copy(tiny_cohort, tmp_path):
    dst = tmp_path / "cohort"
    shutil.copytree(tiny_cohort, dst)
    return dst


def _gm_file(root, sub="sub-002"):
    return next((root / sub / "anat").glob("*label-GM_probseg.nii.gz"))


def _load(root, tmp_path):
    cohort = Cohort.from_bids(root, ["gm"])
    return load_map(cohort, "gm", 8.0, tmp_path / "cache", progress=False)


def test_valid_cohort_loads(cohort_copy, tmp_path):
    arr = _load(cohort_copy, tmp_path)
    assert arr.shape == (24, 23, 28, 23) and arr.dtype == np.float32
    again = _load(cohort_copy, tmp_path)  # from the cache
    np.testing.assert_array_equal(arr, again)


def test_corrupt_nifti(cohort_copy, tmp_path):
    f = _gm_file(cohort_copy)
    f.write_bytes(b"not a nifti file at all")
    with pytest.raises(VolumeError, match=r"sub-002.*Cannot read|Cannot read.*sub-002") as e:
        _load(cohort_copy, tmp_path)
    assert str(f) in str(e.value)


def test_nan_voxels(cohort_copy, tmp_path):
    f = _gm_file(cohort_copy)
    img = nib.load(f)
    data = img.get_fdata().astype(np.float32)
    data[10, 10, 10] = np.nan
    nib.save(nib.Nifti1Image(data, img.affine), f)
    with pytest.raises(VolumeError, match="NaN") as e:
        _load(cohort_copy, tmp_path)
    assert "sub-002" in str(e.value) and str(f) in str(e.value)


def test_4d_image(cohort_copy, tmp_path):
    f = _gm_file(cohort_copy)
    img = nib.load(f)
    data = np.stack([img.get_fdata()] * 2, axis=-1).astype(np.float32)
    nib.save(nib.Nifti1Image(data, img.affine), f)
    with pytest.raises(VolumeError, match="expected a 3D volume"):
        _load(cohort_copy, tmp_path)


def test_inconsistent_affine(cohort_copy, tmp_path):
    f = _gm_file(cohort_copy, "sub-005")
    img = nib.load(f)
    aff = img.affine.copy()
    aff[0, 3] += 20.0
    nib.save(nib.Nifti1Image(img.get_fdata().astype(np.float32), aff), f)
    with pytest.raises(VolumeError, match="differs from subject sub-001") as e:
        _load(cohort_copy, tmp_path)
    assert "sub-005" in str(e.value)


def test_empty_map(cohort_copy, tmp_path):
    f = _gm_file(cohort_copy, "sub-003")
    img = nib.load(f)
    nib.save(nib.Nifti1Image(np.zeros(img.shape, np.float32), img.affine), f)
    with pytest.raises(VolumeError, match="empty or constant"):
        _load(cohort_copy, tmp_path)


def test_unknown_group_label(cohort_copy):
    tsv = cohort_copy / "participants.tsv"
    p = pd.read_csv(tsv, sep="\t")
    p.loc[3, "group"] = "SZ"
    p.to_csv(tsv, sep="\t", index=False)
    with pytest.raises(CohortError, match="'sz'.*patient"):
        Cohort.from_bids(cohort_copy, ["gm"])


def test_duplicate_subject(cohort_copy):
    tsv = cohort_copy / "participants.tsv"
    p = pd.read_csv(tsv, sep="\t")
    pd.concat([p, p.iloc[[0]]]).to_csv(tsv, sep="\t", index=False)
    with pytest.raises(CohortError, match="sub-001.*more than once"):
        Cohort.from_bids(cohort_copy, ["gm"])


def test_missing_map(cohort_copy):
    _gm_file(cohort_copy, "sub-004").unlink()
    with pytest.raises(CohortError, match="Subject sub-004: no gm map"):
        Cohort.from_bids(cohort_copy, ["gm"])


def test_missing_participants(tmp_path):
    with pytest.raises(CohortError, match="participants.tsv"):
        Cohort.from_bids(tmp_path, ["gm"])


def test_unknown_map(cohort_copy):
    with pytest.raises(CohortError, match="Unknown map"):
        Cohort.from_bids(cohort_copy, ["t1"])


def test_resamples_other_grids(cohort_copy, tmp_path):
    """A map on another grid in MNI space is resampled onto the study grid."""
    cohort = Cohort.from_bids(cohort_copy, ["gm"])
    arr = load_map(cohort, "gm", 6.0, tmp_path / "cache6", progress=False)
    assert arr.shape == (24, 31, 37, 31)
    assert float(np.asarray(arr).max()) > 0.3


# --- BIDS entities ----------------------------------------------------------------------

def test_parse_bids_name():
    from mri3dcnn.cohort import parse_bids_name

    assert parse_bids_name("sub-01_ses-2_space-MNI_res-2mm_label-GM_probseg.nii.gz") == (
        {"sub": "01", "ses": "2", "space": "MNI", "res": "2mm", "label": "GM"}, "probseg",
        ".nii.gz")
    assert parse_bids_name("sub-01_desc-FA.nii") == ({"sub": "01", "desc": "FA"}, "", ".nii")


def _into_sessions(root, sessions=("1", "2")):
    """Every subject's GM map moved into one folder per session, named with its ses- entity."""
    for f in sorted(root.glob("sub-*/anat/*label-GM_probseg.nii.gz")):
        sub = f.parents[1].name
        for ses in sessions:
            dst = f.parents[1] / f"ses-{ses}" / "anat" / f.name.replace(f"{sub}_",
                                                                        f"{sub}_ses-{ses}_")
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(f, dst)
        f.unlink()


def test_two_sessions_are_a_choice(cohort_copy):
    _into_sessions(cohort_copy)
    with pytest.raises(CohortError, match=r"differ in ses.*--session.*\['1', '2'\]") as e:
        Cohort.from_bids(cohort_copy, ["gm"])
    assert "ses-1_space" in str(e.value) and "ses-2_space" in str(e.value)
    for choice in ("2", "ses-2"):
        cohort = Cohort.from_bids(cohort_copy, ["gm"], session=choice)
        assert all("/ses-2/anat/" in p and "_ses-2_" in p for p in cohort.paths("gm"))
        assert cohort.selection == {"ses": "2"}
    with pytest.raises(CohortError, match=r"no gm map .* with ses-3 \(it has .*ses-1"):
        Cohort.from_bids(cohort_copy, ["gm"], session="3")


def test_two_spaces_are_a_choice(cohort_copy):
    f = _gm_file(cohort_copy, "sub-003")
    other = f.with_name(f.name.replace("MNI152NLin2009aSym", "MNI152NLin6Asym"))
    shutil.copy(f, other)
    with pytest.raises(CohortError, match=r"sub-003: 2 gm files differ in space.*--space") as e:
        Cohort.from_bids(cohort_copy, ["gm"])
    assert str(f) in str(e.value) and str(other) in str(e.value)
    cohort = Cohort.from_bids(cohort_copy, ["gm"], space="MNI152NLin2009aSym")
    assert cohort.paths("gm")[2] == str(f)
    with pytest.raises(CohortError, match="sub-001: no gm map .* with space-MNI152NLin6Asym"):
        Cohort.from_bids(cohort_copy, ["gm"], space="MNI152NLin6Asym")


def test_duplicates_that_are_not_a_choice(cohort_copy):
    f = _gm_file(cohort_copy, "sub-003")
    shutil.copy(f, f.parents[1] / f.name)  # the same name one folder up
    with pytest.raises(CohortError, match="keep one per subject"):
        Cohort.from_bids(cohort_copy, ["gm"])


def test_files_are_matched_by_entities_not_substrings(cohort_copy):
    f = _gm_file(cohort_copy, "sub-003")
    # another subject's file, a mask and a GM file of another suffix do not count
    shutil.copy(f, f.with_name(f.name.replace("sub-003", "sub-004")))
    shutil.copy(f, f.with_name(f.name.replace("label-GM_probseg", "label-GM_mask")))
    shutil.copy(f, f.with_name(f.name.replace("label-GM", "label-GMWM")))
    cohort = Cohort.from_bids(cohort_copy, ["gm"])
    assert cohort.paths("gm")[2] == str(f)


def test_dataset_description_is_read(cohort_copy):
    cohort = Cohort.from_bids(cohort_copy, ["gm"])
    assert cohort.name == "mri3dcnn synthetic cohort"
    assert cohort.description["DatasetType"] == "derivative"
    assert cohort.summary().attrs["name"] == cohort.name
    (cohort_copy / "dataset_description.json").write_text("{not json")
    with pytest.raises(CohortError, match="dataset_description.json is not valid JSON"):
        Cohort.from_bids(cohort_copy, ["gm"])


def test_cli_cohort_session_flag(cohort_copy, capsys):
    from mri3dcnn.cli import main

    _into_sessions(cohort_copy)
    with pytest.raises(SystemExit, match="--session"):
        main(["cohort", str(cohort_copy), "--maps", "gm"])
    assert main(["cohort", str(cohort_copy), "--maps", "gm", "--session", "1"]) == 0
    assert "mri3dcnn synthetic cohort: 24 subjects, maps gm (ses-1)" in capsys.readouterr().out
