"""A chapter's tables: numbered and captioned by the book, numbers formatted once."""

import re

import numpy as np
import pandas as pd
import pytest

from mri3dcnn.tables import escape, format_p, formatted, table


def _summary() -> pd.DataFrame:
    return pd.DataFrame({
        "model": ["svm_linear", "sequential_2-late"], "maps": ["gm", "gm+fa"],
        "set": ["cv", "independent"], "n": [40, 12],
        "accuracy": [0.6234, 0.71], "accuracy_low": [0.551, np.nan],
        "accuracy_high": [0.6949, np.nan], "p_chance": [0.0004, np.nan],
        "test": ["corrected repeated-CV t", "subject bootstrap"]})


def _rows(markdown: str) -> list[str]:
    """The body rows of the pipe table (header and delimiter row left out)."""
    rows = [ln for ln in markdown.splitlines() if ln.startswith("|")]
    return rows[2:]


def test_a_table_is_a_numbered_myst_table_with_its_caption_and_name():
    md = table(_summary(), "Every model, pooled over folds.", "tbl-models")._repr_markdown_()
    lines = md.splitlines()
    assert lines[0] == "~~~{table} Every model, pooled over folds."
    assert r"| 0.62 \[0.55," + "\u00a0" + r"0.69\] |" in md  # wraps below its estimate, not inside
    assert lines[1] == ":name: tbl-models"
    assert md.rstrip().endswith("~~~")
    assert len(_rows(md)) == 2  # one row per row of the DataFrame


def test_a_caption_with_code_still_opens_the_directive():
    from markdown_it import MarkdownIt

    md = table(_summary(), "Pooled (`cv`: corrected t-test).", "tbl-models").markdown
    fences = [t for t in MarkdownIt("commonmark").parse(md) if t.type == "fence"]
    assert [f.info for f in fences] == ["{table} Pooled (`cv`: corrected t-test)."]
    assert ":name: tbl-models" in fences[0].content


def test_intervals_join_their_estimate_and_numbers_have_fixed_decimals():
    cells = formatted(_summary())
    assert list(cells.columns) == ["model", "maps", "set", "n", "accuracy", "p_chance", "test"]
    assert cells["accuracy"].tolist() == ["0.62 [0.55, 0.69]", "0.71"]
    assert cells["n"].tolist() == ["40", "12"]
    assert cells["p_chance"].tolist() == ["<0.001", "—"]
    assert format_p(0.0123) == "0.012"


def test_unnamed_bounds_join_the_estimate_or_the_column_named():
    d = pd.DataFrame({"fusion": ["late"], "difference": [0.031], "ci_low": [-0.02],
                      "ci_high": [0.08]})
    assert formatted(d)["difference"].tolist() == ["+0.031 [-0.020, +0.080]"]
    o = pd.DataFrame({"row": ["oracle"], "balanced_accuracy": [0.8], "CI low": [0.7],
                      "CI high": [0.9]})
    assert formatted(o, ci_of="balanced_accuracy")["balanced_accuracy"].tolist() == \
        ["0.80 [0.70, 0.90]"]
    with pytest.raises(ValueError, match="ci_of"):
        formatted(o)


def test_small_values_keep_two_significant_digits():
    d = pd.DataFrame({"mean saliency": [0.00031, 0.00012]})
    assert formatted(d)["mean saliency"].tolist() == ["0.00031", "0.00012"]


def test_markdown_in_a_cell_is_shown_literally():
    d = pd.DataFrame({"model": ["a|b", "*x*", "_y_", "$z$", "[l](u)"], "v": [1, 2, 3, 4, 5]})
    md = table(d, "Names.", "tbl-names").markdown
    rows = _rows(md)
    assert len(rows) == 5
    # a pipe in a name would split its row into one more cell
    assert all(len(re.findall(r"(?<!\\)\|", r)) == 3 for r in rows), rows
    assert r"a\|b" in md and r"\*x\*" in md and r"\_y\_" in md and r"\$z\$" in md
    assert r"\[l\](u)" in md
    assert escape("two\nlines") == "two lines"


def test_the_book_renders_the_escaped_cells_as_typed():
    from markdown_it import MarkdownIt

    d = pd.DataFrame({"model": ["svm_linear", "_a_", "x|y"], "auc": [0.5, 0.6, 0.7]})
    md = table(d, "Names.", "tbl-names").markdown
    body = "\n".join(ln for ln in md.splitlines() if ln.startswith("|"))
    html = MarkdownIt("commonmark").enable("table").render(body)
    cells = re.findall(r"<td[^>]*>(.*?)</td>", html)
    assert cells[::2] == ["svm_linear", "_a_", "x|y"], cells
    assert html.count("<tr>") == 4


def test_columns_can_be_dropped_renamed_and_the_index_shown():
    t = table(_summary().set_index("model"), "C.", "tbl-c", drop=["test", "accuracy"],
              columns={"p_chance": "p"})
    assert list(t.cells.columns) == ["model", "maps", "set", "n", "p"]
    assert "accuracy_low" not in t.markdown and "| p |" in t.markdown


def test_an_empty_table_still_carries_its_label():
    md = table(pd.DataFrame(), "Nothing flagged.", "tbl-empty", empty="no outlier").markdown
    assert ":name: tbl-empty" in md and _rows(md) == ["| no outlier |"]
    md = table(_summary().iloc[:0], "No rows.", "tbl-none").markdown
    assert len(_rows(md)) == 1 and "| none |" in md


def test_a_name_numref_cannot_cite_is_refused():
    with pytest.raises(ValueError, match="tbl-"):
        table(_summary(), "C.", "Models table")


def test_a_named_index_is_shown_and_positions_are_not():
    counts = pd.DataFrame({"site": ["a", "a"], "group": ["control", "patient"], "n": [3, 4]})
    assert list(formatted(counts.set_index(["site", "group"])).columns) == ["site", "group", "n"]
    filtered = counts[counts.n > 3]
    assert list(formatted(filtered).columns) == ["site", "group", "n"]


def test_a_url_in_a_cell_stays_whole():
    url = "https://example.org/keras/vgg16_weights_tf_notop.h5"
    assert escape(f"not found: download {url}") == f"not found: download {url}"
    assert escape("_a_ b_") == r"\_a\_ b\_"


def test_a_flag_reads_as_a_word():
    assert formatted(pd.DataFrame({"passes": [True, False]}))["passes"].tolist() == ["yes", "no"]


def test_p_values_already_written_as_text_are_kept():
    d = pd.DataFrame({"claim": ["a", "b"], "p": ["0.0123", "—"]})
    assert formatted(d)["p"].tolist() == ["0.0123", "—"]
