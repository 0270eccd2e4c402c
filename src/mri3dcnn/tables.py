"""A chapter's tables as a paper's: numbered, captioned, citable, and narrow enough to read.

A table is displayed as Markdown holding a MyST `{table}` directive, which the book parses
as MyST (`nb_render_markdown_format: myst` in `book/_config.yml`): Sphinx numbers it
("Table 3"), and prose cites it with {numref}`tbl-...`. Numbers are formatted here, once:
fixed decimals per column, each interval merged into its estimate (`0.62 [0.55, 0.69]`),
p-values as a reader expects them; text is escaped so that a model's name never turns
into emphasis, a link, math or a broken row.
"""

from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd

#: a table's label: what {numref} cites; labels are global to the book, so unique
NAME = re.compile(r"^tbl-[a-z0-9]+(-[a-z0-9]+)*$")
#: interval bounds that belong to another column: `ci_low`/`ci_high` and `CI low`/`CI high`
CI_BOUNDS = (("ci_low", "ci_high"), ("CI low", "CI high"))
#: columns the CI bounds belong to when the caller names none, first found
CI_ESTIMATES = ("estimate", "difference", "realised d")
#: differences: shown with their sign
SIGNED = ("estimate", "difference", "auc_difference")
#: p-values: three decimals, and "<0.001" below that
P_VALUE = re.compile(r"^p($|[_ ]|-value)")
#: Markdown that would change a cell's meaning: emphasis, code, links, math, roles, rows.
#: An underscore inside a word (`svm_linear`) is no emphasis and stays as it is, so that a
#: URL in a message is linked whole.
_SPECIAL = re.compile(r"([\\`*{}\[\]<>|$~#]|(?<![0-9A-Za-z])_|_(?![0-9A-Za-z]))")


def format_interval(estimate: float, low: float, high: float, digits: int = 2,
                    signed: bool = False) -> str:
    """`0.79 [0.74, 0.83]`: an estimate with its interval, as a reader scans it."""
    fmt = f"{{:{'+' if signed else ''}.{digits}f}}"
    if not finite(estimate):
        return "not estimated"
    if not (finite(low) and finite(high)):
        return fmt.format(estimate)
    return f"{fmt.format(estimate)} [{fmt.format(low)}, {fmt.format(high)}]"


def finite(x) -> bool:
    """A number that is not NaN or infinite (and not None, nor text)."""
    try:
        return x is not None and not isinstance(x, str) and math.isfinite(float(x))
    except (TypeError, ValueError):
        return False


def format_p(p) -> str:
    """A p-value: three decimals, `<0.001` below; `—` where none was computed."""
    if not finite(p):
        return "—"
    return "<0.001" if float(p) < 0.001 else f"{float(p):.3f}"


def escape(text) -> str:
    """Text as a Markdown table cell shows it literally, on one line."""
    return _SPECIAL.sub(r"\\\1", " ".join(str(text).split()))


def _decimals(values: pd.Series, digits: int) -> int:
    """Fixed decimals for a column: `digits`, more where its largest value would
    otherwise show fewer than two significant digits (saliency scores of 1e-4)."""
    big = values[np.isfinite(values)].abs().max() if len(values) else float("nan")
    if not finite(big) or big == 0 or big >= 10 ** (1 - digits):
        return digits
    return min(8, 1 - int(math.floor(math.log10(big))))


def _numeric(col: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col)


def _format_column(col: pd.Series, digits: int, signed: bool = False) -> list[str]:
    if P_VALUE.match(str(col.name)) and _numeric(col):  # p-values already text stay
        return [format_p(v) for v in col]
    if pd.api.types.is_bool_dtype(col):
        return ["yes" if v else "no" for v in col]
    if not _numeric(col):
        return ["—" if v is None or (isinstance(v, float) and math.isnan(v)) else str(v)
                for v in col]
    values = col.astype(float)
    shown = values[np.isfinite(values)]
    # counts stored as floats (mean epochs, coordinates) read as counts; never a metric
    # of 0 or 1, which is a rate
    if pd.api.types.is_integer_dtype(col) or (len(shown) and (shown == shown.round()).all()
                                              and shown.abs().max() >= 2):
        return [f"{v:{'+' if signed else ''}.0f}" if finite(v) else "—" for v in values]
    fmt = f"{{:{'+' if signed else ''}.{_decimals(values, digits)}f}}"
    return [fmt.format(v) if finite(v) else "—" for v in values]


def _flat(df: pd.DataFrame, index: bool | None) -> pd.DataFrame:
    """Index as columns (unless it is the default one) and one header row."""
    out = df.copy()
    if isinstance(out.columns, pd.MultiIndex):
        out.columns = [" ".join(str(x) for x in c if str(x)) for c in out.columns]
    if index is None:  # a named index is data (site, group); positions after a filter not
        index = (any(n is not None for n in out.index.names)
                 or not pd.api.types.is_integer_dtype(out.index))
    return out.reset_index() if index else out.reset_index(drop=True)


def formatted(df: pd.DataFrame, digits: int = 2, ci_of: str | None = None,
              index: bool | None = None, signed=SIGNED) -> pd.DataFrame:
    """The table's cells as text: intervals merged into their estimates, fixed decimals.

    Parameters
    ----------
    df : DataFrame
        Numbers as computed; `X` with `X_low` and `X_high` becomes one column
        `X [low, high]`, and `ci_low`/`ci_high` (or `CI low`/`CI high`) join `ci_of`.
    digits : int
        Decimals of every number (more in a column of very small values).
    ci_of : str, optional
        The column the unnamed CI bounds belong to; default the first of `CI_ESTIMATES`.
    index : bool, optional
        Show the index as columns; by default when it is named or not integers.
    signed : sequence of str
        Columns shown with their sign (differences).

    Returns
    -------
    DataFrame
        Strings only, one row per row of `df`.
    """
    d = _flat(df, index)
    bounds = {c: (f"{c}_low", f"{c}_high") for c in d.columns
              if f"{c}_low" in d.columns and f"{c}_high" in d.columns}
    for low, high in CI_BOUNDS:
        if low in d.columns and high in d.columns:
            est = ci_of or next((c for c in CI_ESTIMATES if c in d.columns), None)
            if est is None or est not in d.columns:
                raise ValueError(f"{low}/{high} belong to no column: name it with ci_of "
                                 f"(columns: {list(d.columns)})")
            bounds[est] = (low, high)
    out = {}
    for c in d.columns:
        if any(c in pair for pair in bounds.values()):
            continue
        if c in bounds:
            low, high = bounds[c]
            dec = _decimals(d[c].astype(float), digits)
            out[c] = [format_interval(e, lo, hi, dec, signed=c in signed)
                      for e, lo, hi in zip(d[c], d[low], d[high], strict=True)]
        else:
            out[c] = _format_column(d[c], digits, signed=c in signed)
    return pd.DataFrame(out, columns=list(out), index=d.index)


def _header(name) -> str:
    """Column names read as words: `balanced_accuracy` is `balanced accuracy`."""
    return str(name).replace("_", " ")


class Table:
    """A numbered, captioned table: Markdown for the book, text in a terminal."""

    def __init__(self, cells: pd.DataFrame, caption: str, name: str, empty: str):
        self.cells, self.caption, self.name, self.empty = cells, caption, name, empty

    @property
    def markdown(self) -> str:
        """The MyST `{table}` directive around a pipe table, one row per row of cells."""
        cells = self.cells
        right = [bool(len(cells)) and cells[c].map(_looks_numeric).all()
                 for c in cells.columns]
        if cells.columns.empty:
            cells, right = pd.DataFrame({"result": [self.empty]}), [False]
        elif cells.empty:
            cells = pd.DataFrame([[self.empty, *["—"] * (len(cells.columns) - 1)]],
                                 columns=cells.columns)
        lines = ["| " + " | ".join(escape(_header(c)) for c in cells.columns) + " |",
                 "| " + " | ".join("---:" if r else ":---" for r in right) + " |"]
        # an interval never breaks inside itself: where a cell must wrap (a narrow
        # notebook), `[0.55, 0.69]` moves below its estimate whole
        lines += ["| " + " | ".join(escape(v).replace(", ", ",\u00a0") if r else escape(v)
                                    for v, r in zip(row, right, strict=True)) + " |"
                  for row in cells.itertuples(index=False)]
        # a tilde fence: a caption may hold `code`, which a backtick fence's info refuses
        return "\n".join([f"~~~{{table}} {self.caption}", f":name: {self.name}", "",
                          *lines, "~~~", ""])

    def _repr_markdown_(self) -> str:
        return self.markdown

    def __repr__(self) -> str:
        return f"{self.caption}\n{self.cells.to_string(index=False)}"


_NUMBER = re.compile(r"^[+\-−]?(\d+(\.\d+)?|<0\.\d+)( \[.*\])?$|^—$")


def _looks_numeric(text: str) -> bool:
    return bool(_NUMBER.match(str(text)))


def table(df: pd.DataFrame | pd.Series, caption: str, name: str, *, digits: int = 2,
          ci_of: str | None = None, index: bool | None = None, columns: dict | None = None,
          drop=(), empty: str = "none") -> Table:
    """A chapter's table: numbered by the book, captioned, citable as {numref}`name`.

    Parameters
    ----------
    df : DataFrame or Series
        The computed table; a Series is one column named by it, its index beside it.
    caption : str
        What the table shows and how its intervals were computed (MyST, one line).
    name : str
        Its label, `tbl-...`, unique in the book.
    digits : int
        Decimals of every number (see `formatted`).
    ci_of : str, optional
        The column that `ci_low`/`ci_high` belong to (see `formatted`).
    index : bool, optional
        Show the index; by default when it is named or not integers.
    columns : dict, optional
        Shorter names for columns, applied after formatting (`{"balanced_accuracy":
        "bal. acc."}`).
    drop : sequence of str
        Columns not shown (redundant on the page; still in the computed table).
    empty : str
        What the single row of an empty table says.

    Returns
    -------
    Table
        Displays as Markdown (the book's numbered table) and prints as text.
    """
    if not NAME.match(name):
        raise ValueError(f"a table's name is `tbl-` then lowercase words and hyphens: {name!r}")
    if isinstance(df, pd.Series):
        df = df.to_frame()
    gone = {f"{c}{s}" for c in drop for s in ("", "_low", "_high")}
    df = df.drop(columns=[c for c in df.columns if c in gone])
    cells = formatted(df, digits, ci_of, index).rename(columns=columns or {})
    return Table(cells, " ".join(caption.split()), name, empty)
