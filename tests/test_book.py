"""End to end on the tiny profile: cohort -> papermill chapters -> Jupyter Book site."""

import re
import shutil
from pathlib import Path

import pytest

from mri3dcnn.runner import ChapterError, build_book, check_executed, execute_book, toc_chapters

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A copy of the project's book sources, so the test never touches the real build."""
    dst = tmp_path_factory.mktemp("project")
    shutil.copytree(ROOT / "notebooks", dst / "notebooks")
    shutil.copytree(ROOT / "book", dst / "book",
                    ignore=shutil.ignore_patterns("_build", "chapters", "mathjax"))
    shutil.copy(ROOT / "data_manifest.yaml", dst)
    return dst


@pytest.mark.slow
def test_tiny_book(project, monkeypatch):
    monkeypatch.setenv("MRI3DCNN_HOME", str(project))
    monkeypatch.setenv("MRI3DCNN_PROFILE", "tiny")
    names = toc_chapters(project)
    assert names[0] == "01_data" and names[-1] == "09_summary"
    # execute all but one chapter with papermill; the book build must execute the missing one
    execute_book("tiny", chapters=names[:-1], root=project)
    index = build_book(project)
    html = project / "book" / "_build" / "html"
    assert index.exists()
    for name in names:
        check_executed(project / "book" / "chapters" / f"{name}.ipynb")
        page = (html / "chapters" / f"{name}.html").read_text()
        assert "<table" in page, f"{name} shows no table"
        assert re.search(r'<img[^>]+src="[^"]+\.png"', page), f"{name} shows no figure"
        assert "Traceback (most recent call last)" not in page, f"{name} shows an error"
    # offline: MathJax is served from the site itself, no script from another host
    methods = (html / "methods.html").read_text()
    assert "_static/mathjax/tex-svg.js" in methods
    assert (html / "_static" / "mathjax" / "tex-svg.js").exists()
    for page in html.rglob("*.html"):
        remote = re.findall(r'<script[^>]+src="(https?://[^"]+)"', page.read_text())
        assert not remote, f"{page.name} loads {remote}"
    # every result is in the store, and the summary lists every chapter's models
    summary = (html / "chapters" / "09_summary.html").read_text()
    for model in ("svm_linear", "nilearn_decoder", "2d_efficientnet_lite0", "sequential_2",
                  "inception_1", "inception_resnet_2", "-channel", "-late"):
        assert model in summary
    assert "supported" in summary or "not tested" in summary  # the claims' verdicts
    saliency = (html / "chapters" / "08_saliency.html").read_text()
    assert "top1pct_inside" in saliency and "r vs shuffled-label model" in saliency
    assert "branch fusion of gm, fa" in saliency  # the multi-branch model, map by map


def test_unexecuted_chapter_is_refused(tmp_path):
    import nbformat

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("print(1)")])
    nbformat.write(nb, tmp_path / "x.ipynb")
    with pytest.raises(ChapterError, match="no outputs"):
        check_executed(tmp_path / "x.ipynb")
    with pytest.raises(ChapterError, match="missing"):
        check_executed(tmp_path / "y.ipynb")
