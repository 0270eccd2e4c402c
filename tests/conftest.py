import os
import shutil
from pathlib import Path

os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402

from mri3dcnn.synthetic import generate_cohort  # noqa: E402


@pytest.fixture(scope="session")
def tiny_cohort(tmp_path_factory):
    """24 subjects, 3 sites, 8 mm grid: the tiny profile's cohort."""
    return generate_cohort(tmp_path_factory.mktemp("cohort") / "tiny", n_subjects=24,
                           seed=1, grid_mm=8.0, n_sites=3, progress=False)


@pytest.fixture(scope="session")
def tiny_book(tmp_path_factory):
    """The tiny book built end to end in a copy of the project: every chapter but the last
    executed with papermill, the last by the book build itself. Returns the html folder.
    `MRI3DCNN_SITE=book/_build/html` checks an already built site instead."""
    from mri3dcnn.runner import build_book, execute_book, toc_chapters

    if os.environ.get("MRI3DCNN_SITE"):
        return Path(os.environ["MRI3DCNN_SITE"]).resolve()
    root = Path(__file__).resolve().parents[1]
    dst = tmp_path_factory.mktemp("project")
    shutil.copytree(root / "notebooks", dst / "notebooks")
    shutil.copytree(root / "book", dst / "book",
                    ignore=shutil.ignore_patterns("_build", "chapters", "mathjax",
                                                  "parameters.md", "reproducibility.md"))
    shutil.copy(root / "data_manifest.yaml", dst)
    (dst / "benchmarks").mkdir()
    for table in root.glob("benchmarks/*.md"):  # the appendix pages include them
        shutil.copy(table, dst / "benchmarks")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MRI3DCNN_HOME", str(dst))
        mp.setenv("MRI3DCNN_PROFILE", "tiny")
        names = toc_chapters(dst)
        execute_book("tiny", chapters=names[:-1], root=dst)
        build_book(dst)
    return dst / "book" / "_build" / "html"
