import os

os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402

from mri3dcnn.synthetic import generate_cohort  # noqa: E402


@pytest.fixture(scope="session")
def tiny_cohort(tmp_path_factory):
    """24 subjects, 3 sites, 8 mm grid: the tiny profile's cohort."""
    return generate_cohort(tmp_path_factory.mktemp("cohort") / "tiny", n_subjects=24,
                           seed=1, grid_mm=8.0, n_sites=3, progress=False)
