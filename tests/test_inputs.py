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
