"""End to end on the tiny profile: cohort -> papermill chapters -> Jupyter Book site."""

import re
import shutil
from pathlib import Path

import pytest

from mri3dcnn.runner import ChapterError, check_executed, toc_chapters

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_tiny_book(tiny_book):
    html = tiny_book
    project = html.parents[2]
    names = toc_chapters(project)
    assert names[0] == "01_data" and names[-2:] == ["09_summary", "11_sweep"]
    assert (html / "index.html").exists()
    for name in names:
        chapter = project / "book" / "chapters" / f"{name}.ipynb"
        check_executed(chapter)
        page = (html / "chapters" / f"{name}.html").read_text()
        # code folded, the parameters open, papermill's injected copy not on the page
        assert "tag_hide-input" in page and "tag_parameters" in page
        assert "tag_injected-parameters" not in page, f"{name} shows injected parameters"
        assert "<table" in page, f"{name} shows no table"
        # every table is numbered and captioned, and the prose's {numref} finds each one
        numbered = re.findall(r'<span class="caption-number">Table (\d+)', page)
        assert numbered and len(numbered) == page.count("<table"), \
            f"{name}: {page.count('<table')} tables, {len(numbered)} numbered"
        cited = set(re.findall(r"\{numref\}`(tbl-[a-z0-9-]+)`",
                               (project / "notebooks" / f"{name}.py").read_text()))
        assert len(cited) == len(numbered), f"{name}: every table is cited in the text"
        for label in cited:
            assert f'id="{label}"' in page, f"{name}: no table {label}"
            assert re.search(rf'href="#{label}"><span class="std std-numref">Table \d+', page), \
                f"{name}: the text does not cite {label} by number"
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
    assert "top1pct inside" in saliency and "r vs shuffled-label model" in saliency
    assert "branch fusion of gm, fa" in saliency  # the multi-branch model, map by map
    # the landing page answers the study with the summary chapter's computed verdicts
    index = (html / "intro.html").read_text()  # index.html redirects to it
    pasted = re.findall(r'<span class="pasted-text">([^<]*)</span>', index)
    verdicts = [v for v in pasted if v.startswith(("supported", "not supported",
                                                      "contradicted", "not tested"))]
    assert len(verdicts) == 4, pasted
    assert "tiny" in pasted  # the profile the numbers came from
    # references resolve, and the computed pages are there
    assert "Hu <em>et al.</em>, 2020" in index and "bibliography.html" in index
    assert "sanity checks for saliency maps" in (html / "bibliography.html").read_text().lower()
    params = (html / "parameters.html").read_text()
    assert all(f"chapters/{n}.ipynb" in params for n in names)
    repro = (html / "reproducibility.html").read_text()
    assert "svm_linear" in repro and "cohort fingerprint" in repro


def test_unexecuted_chapter_is_refused(tmp_path):
    import nbformat

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("print(1)")])
    nbformat.write(nb, tmp_path / "x.ipynb")
    with pytest.raises(ChapterError, match="no outputs"):
        check_executed(tmp_path / "x.ipynb")
    with pytest.raises(ChapterError, match="missing"):
        check_executed(tmp_path / "y.ipynb")


def test_chapter_cells_are_tagged_for_the_page():
    import nbformat

    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("# Title"),
        nbformat.v4.new_code_cell("profile = 'quick'", metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell("profile = 'tiny'",
                                  metadata={"tags": ["injected-parameters"]}),
        nbformat.v4.new_code_cell("x = 1"),
        nbformat.v4.new_code_cell("glue('a', 1)", metadata={"tags": ["remove-cell"]}),
    ])
    from mri3dcnn.runner import tag_for_book

    assert tag_for_book(nb)
    tags = [c.metadata.get("tags", []) for c in nb.cells]
    assert tags[1] == ["parameters"]  # the real parameters stay open on the page
    assert "remove-cell" in tags[2]  # papermill's copy is not shown twice
    assert tags[3] == ["hide-input"]
    assert tags[4] == ["remove-cell"]
    assert not tag_for_book(nb)  # idempotent: an executed chapter is tagged once


def _prose(markdown: str) -> str:
    """The text a reader sees typed in a Markdown source: no code, roles, labels, links."""
    text = re.sub(r"```.*?```", "", markdown, flags=re.DOTALL)
    text = re.sub(r"\{[\w:-]+\}`[^`]*`", "", text)  # {glue:text}`...`, {cite:p}`...`
    text = re.sub(r"`[^`]*`", "", text)
    text = re.sub(r"^\([\w-]+\)=$", "", text, flags=re.MULTILINE)
    text = re.sub(r"^:[\w-]+:.*$", "", text, flags=re.MULTILINE)  # directive options
    return re.sub(r"\]\([^)]*\)", "]", text)


# a number standing alone (0.12, 95 %, -3), not a name that holds digits (3D, MNI152)
NUMBER = re.compile(r"(?<![\w.])[-+−]?\d+(?:[.,]\d+)?(?![\w])")


def test_landing_page_types_no_number():
    intro = (ROOT / "book" / "intro.md").read_text()
    typed = [line for line in _prose(intro).splitlines() if NUMBER.search(line)]
    assert not typed, f"numbers typed on the landing page instead of glued: {typed}"
    # and the claims are pasted: each one's verdict and effect
    for i in range(1, 5):
        for field in ("claim", "verdict", "effect"):
            assert f"09_summary.ipynb::claim{i}_{field}:s`" in intro


def test_the_digit_scan_catches_a_typed_number():
    assert NUMBER.search(_prose("3D CNNs beat the SVM by 0.12 {glue:text}`x::y:s`"))
    assert NUMBER.search(_prose("accuracy 95 % on 400 subjects"))
    assert not NUMBER.search(_prose("3D CNNs beat the SVM by "
                                    "{glue:text}`chapters/09_summary.ipynb::claim1_effect:s`"))


def test_every_glue_key_the_landing_page_pastes_is_glued(monkeypatch):
    import myst_nb
    import pandas as pd

    from mri3dcnn.bookpages import glue_claims

    glued = {}
    monkeypatch.setattr(myst_nb, "glue", lambda name, value, display=True:
                        glued.__setitem__(name, value))
    claims = pd.DataFrame([
        {"claim": f"claim {i}", "model_a": "a [gm]", "model_b": "b [gm]", "verdict": v,
         "estimate": 0.1, "p_holm": 0.01, "test": "DeLong AUC, independent"}
        for i, v in enumerate(["supported", "not supported", "contradicted"])]
        + [{"claim": "generalises", "model_a": None, "model_b": None,
            "verdict": "not tested: no independent set"}])

    class Cohort:
        participants = pd.DataFrame({"participant_id": ["s1", "s2"], "site": ["A", "B"]})
        root = Path("/data/synthetic-tiny")

    class Study:
        cohort = Cohort()
        fingerprint = "0123abcd"

        class profile:
            name = "tiny"

    rows = glue_claims(claims, Study())
    assert list(rows["verdict"]) == list(claims["verdict"])
    assert glued["claim1_effect"] == "+0.100"
    assert glued["claim4_effect"] == "not estimated"
    assert glued["study_sites"] == "2" and glued["study_fingerprint"] == "0123abcd"
    pasted = set(re.findall(r"09_summary\.ipynb::(\w+):s`",
                            (ROOT / "book" / "intro.md").read_text()))
    assert pasted and pasted <= set(glued), pasted - set(glued)


def test_intervals_read_as_a_reader_scans_them():
    from mri3dcnn.bookpages import format_interval

    assert format_interval(0.7912, 0.7401, 0.8333) == "0.79 [0.74, 0.83]"
    assert format_interval(0.05, -0.01, 0.11, digits=3, signed=True) == \
        "+0.050 [-0.010, +0.110]"
    assert format_interval(0.5, float("nan"), 0.6) == "0.50"
    assert format_interval(float("nan"), 0.1, 0.2) == "not estimated"


def test_parameters_page_is_read_from_the_chapters():
    import ast

    import jupytext

    from mri3dcnn.bookpages import parameters_page

    page = parameters_page(ROOT)
    for name in toc_chapters(ROOT):
        nb = jupytext.read(ROOT / "notebooks" / f"{name}.py")
        cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
        names = [t.id for node in ast.parse(cell.source).body
                 if isinstance(node, ast.Assign) for t in node.targets]
        section = page.split(f"<chapters/{name}>`")[1].split("## ")[0]
        for param in names:
            assert f"| {param} " in section, (name, param)
        assert f"papermill book/chapters/{name}.ipynb" in section


def test_reproducibility_page_reads_the_results_store(tmp_path):
    import pandas as pd

    from mri3dcnn.bookpages import reproducibility_page
    from mri3dcnn.results import ResultsStore

    shutil.copytree(ROOT / "book", tmp_path / "book",
                    ignore=shutil.ignore_patterns("_build", "chapters", "_static"))
    store = ResultsStore(tmp_path / "results" / "quick")
    preds = pd.DataFrame({"participant_id": ["s1"], "set": ["cv"], "y_true": [1],
                          "score": [0.7], "pred": [1]})
    rec = store.put({"chapter": "02_svm", "family": "svm_linear", "maps": ["gm"],
                     "fusion": "none", "protocol": "inner", "variant": "none",
                     "features": "volumes", "fold": 0, "repeat": 0, "seed": 7,
                     "config": {"cohort": "feedc0ffee"}}, preds)
    page = reproducibility_page(tmp_path)
    assert "feedc0ffee" in page and rec.info["hash"][:10] in page
    row = next(line for line in page.splitlines() if line.startswith("| 02_svm "))
    assert re.search(r"\|\s+7\s+\|", row)  # the seed, from the record
    assert f"numpy {rec.info['versions']['numpy']}" in page


def test_a_captioned_figure_gets_a_cell_of_its_own():
    import nbformat

    from mri3dcnn.runner import split_figures

    figure = {"caption": "The models.", "name": "fig-models"}
    table = nbformat.v4.new_output("display_data", {"text/html": "<table></table>"})
    image = nbformat.v4.new_output("display_data", {"image/png": "iVBO"})
    note = nbformat.v4.new_output("display_data", {"text/markdown": "n = 3"})
    cell = nbformat.v4.new_code_cell("show()", metadata={"mystnb": {"figure": figure}})
    cell.outputs = [table, image, note]
    alone = nbformat.v4.new_code_cell("plot()", metadata={"mystnb": {"figure": figure}})
    alone.outputs = [image]
    nb = nbformat.v4.new_notebook(cells=[cell, alone])
    assert split_figures(nb)
    code, fig, rest, kept = nb.cells
    assert code.source == "show()" and code.outputs == [table]
    assert "figure" not in code.metadata["mystnb"]
    assert fig.outputs == [image] and fig.metadata["mystnb"]["figure"] == figure
    assert rest.outputs == [note]
    assert fig.source.strip() and fig.metadata["tags"] == ["remove-input"]  # rendered, no code
    assert kept is alone  # a cell showing only its figure is left as it is
    assert not split_figures(nb)


def test_tensorflow_log_lines_stay_off_the_page():
    import nbformat

    from mri3dcnn.runner import drop_library_logs

    logs = ("WARNING: All log messages before absl::InitializeLog() is called are written "
            "to STDERR\nI0000 00:00:1795635559.629951   20110 port.cc:153] oneDNN custom "
            "operations are on.\n")
    noisy = nbformat.v4.new_code_cell("fit()")
    noisy.outputs = [nbformat.v4.new_output("stream", name="stderr", text=logs)]
    mixed = nbformat.v4.new_code_cell("fit()")
    mixed.outputs = [nbformat.v4.new_output("stream", name="stderr",
                                            text=logs + "UserWarning: few subjects\n")]
    nb = nbformat.v4.new_notebook(cells=[noisy, mixed])
    assert drop_library_logs(nb)
    assert noisy.outputs == []
    assert mixed.outputs[0]["text"] == "UserWarning: few subjects\n"
    assert not drop_library_logs(nb)
