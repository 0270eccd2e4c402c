"""The study space: grid, templates, resampling and brain mask shared by every cohort."""

import nibabel as nib
import numpy as np
import pytest

from mri3dcnn import volumes
from mri3dcnn.space import brain_mask, study_grid, templates, to_grid, to_image


def test_study_grid_is_the_spm_box():
    affine, shape = study_grid(3.0)
    assert shape == (61, 73, 61)
    np.testing.assert_allclose(affine[:3, 3], (-90, -126, -72))
    with pytest.raises(ValueError, match="positive"):
        study_grid(0)


def test_brain_mask_and_templates_agree():
    mask = brain_mask(8.0)
    tpl = templates(8.0)
    assert mask.shape == tpl.shape == (23, 28, 23)
    assert 0.2 < mask.mean() < 0.6
    assert (tpl.gm[~mask] == 0).all() and (tpl.wm[~mask] == 0).all()
    assert volumes.brain_mask is brain_mask  # one mask for real and synthetic data


def test_to_grid_resamples_and_keeps_what_is_there():
    vol = np.random.default_rng(0).random((23, 28, 23)).astype(np.float32)
    np.testing.assert_array_equal(to_grid(to_image(vol, 8.0), 8.0), vol)
    affine, _ = study_grid(4.0)
    fine = nib.Nifti1Image(np.ones((46, 55, 46), np.float32), affine)
    out = to_grid(fine, 8.0)
    assert out.shape == (23, 28, 23)
    assert out[5:15, 5:20, 5:15].min() == pytest.approx(1.0)
