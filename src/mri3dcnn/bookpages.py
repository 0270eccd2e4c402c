"""Pages of the book that are computed, never typed: the landing page's numbers, every
chapter's papermill parameters, and the reproducibility appendix.

The landing page pastes values glued by the summary chapter (`glue_claims`), so a number
on it always comes from the stored predictions. The parameters page and the appendix are
Markdown written into `book/` when the book is built (`write_generated_pages`), from the
chapters' own parameters cells and from the results store; they are build output.
"""

from __future__ import annotations

import platform
import sys
import tempfile
from pathlib import Path

import pandas as pd

from .atomic import write_text
from .config import config_hash, default_paths, get_profile, project_root
from .results import VERSIONED_PACKAGES, ResultsStore, package_versions
from .tables import format_interval, format_p

GENERATED_PAGES = ("parameters.md", "reproducibility.md")

# what renders the book, beside what computes its numbers
BUILD_PACKAGES = (*VERSIONED_PACKAGES, "papermill", "jupyter-book", "myst-nb")


def claim_rows(claims: pd.DataFrame) -> pd.DataFrame:
    """The claims as the landing page shows them: verdict, effect and interval as text.

    Parameters
    ----------
    claims : DataFrame
        One row per claim with `claim`, `verdict` and, where tested, `estimate`, `ci_low`,
        `ci_high`, `p_holm`, `model_a`, `model_b` and `test`.

    Returns
    -------
    DataFrame
        Columns `claim`, `verdict`, `effect` (estimate with its 95 % interval where the
        test gives one), `p` (Holm-corrected, where the test gives one), `models`, `test`.
    """
    def col(name):
        return claims[name] if name in claims else pd.Series([float("nan")] * len(claims),
                                                              index=claims.index)

    est, low, high, p = col("estimate"), col("ci_low"), col("ci_high"), col("p_holm")
    effect = [format_interval(e, lo, hi, digits=3, signed=True)
              for e, lo, hi in zip(est, low, high, strict=True)]
    models = [f"{a} vs {b}" if isinstance(a, str) and isinstance(b, str) else "—"
              for a, b in zip(col("model_a"), col("model_b"), strict=True)]
    return pd.DataFrame({
        "claim": claims["claim"].astype(str),
        "verdict": claims["verdict"].astype(str),
        "effect": effect,
        "p": [format_p(v) for v in p],
        "models": models,
        "test": col("test").fillna("—").astype(str),
    })


def glue_claims(claims: pd.DataFrame, study) -> pd.DataFrame:
    """Glue each claim's verdict, effect and interval, and the data they came from, for
    the landing page (`{glue:text}` from `chapters/09_summary.ipynb`).

    Parameters
    ----------
    claims : DataFrame
        The study's claims as tested on this cohort (see `claim_rows`).
    study : Study
        The open study: its profile, cohort and fingerprint are glued beside the claims.

    Returns
    -------
    DataFrame
        The rows that were glued, for display.
    """
    from myst_nb import glue

    rows = claim_rows(claims)
    for i, row in enumerate(rows.itertuples(index=False), start=1):
        for field in ("claim", "verdict", "effect", "p", "models", "test"):
            glue(f"claim{i}_{field}", getattr(row, field), display=False)
    participants = study.cohort.participants
    glue("study_profile", study.profile.name, display=False)
    glue("study_cohort", study.cohort.root.name, display=False)
    glue("study_fingerprint", study.fingerprint, display=False)
    glue("study_subjects", str(len(participants)), display=False)
    sites = participants["site"].nunique() if "site" in participants else 1
    glue("study_sites", str(sites), display=False)
    return rows


# ---------------------------------------------------------------- parameters page

def chapter_parameters(name: str, root: Path | None = None) -> pd.DataFrame:
    """One chapter's papermill parameters as papermill reads them: name, type, default
    and the comment beside each.

    Parameters
    ----------
    name : str
        The chapter, e.g. `02_svm`.
    root : Path, optional
        The project root.

    Returns
    -------
    DataFrame
        Columns `parameter`, `type`, `default`, `help`.
    """
    import jupytext
    import nbformat
    import papermill as pm

    from .runner import chapter_source

    nb = jupytext.read(chapter_source(name, root))
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{name}.ipynb"
        nbformat.write(nb, path)
        params = pm.inspect_notebook(str(path))
    return pd.DataFrame([{"parameter": p["name"], "type": p["inferred_type_name"],
                          "default": p["default"], "help": p["help"] or ""}
                         for p in params.values()],
                        columns=["parameter", "type", "default", "help"])


def _table(df: pd.DataFrame) -> str:
    """A Markdown table whose cells are code where they hold values."""
    return df.to_markdown(index=False, tablefmt="pipe")


def _chapter_title(name: str, root: Path | None = None) -> str:
    """The chapter's own title: the first heading of its first Markdown cell."""
    import jupytext

    from .runner import chapter_source

    nb = jupytext.read(chapter_source(name, root))
    for cell in nb.cells:
        for line in cell.source.splitlines() if cell.cell_type == "markdown" else []:
            if line.startswith("# "):
                return line[2:].strip()
    return name


def parameters_page(root: Path | None = None) -> str:
    """The Markdown of the page listing every chapter's parameters."""
    from .runner import toc_chapters

    out = ["(parameters)=", "# Re-running a chapter", "",
           "Each chapter is a notebook whose first code cell holds its papermill "
           "parameters. The tables below are read from those cells when the book is "
           "built, so they always match the chapters. Any parameter can be set on the "
           "command line with `-p NAME VALUE` (`-y` for lists), as in the command under each "
           "table.", ""]
    for name in toc_chapters(root):
        params = chapter_parameters(name, root)
        shown = params.assign(default=[f"`{d}`" for d in params["default"]])
        # papermill infers a type only from annotations, and help only from comments
        shown = shown[[c for c in shown.columns
                       if c in ("parameter", "default") or shown[c].fillna("").astype(str)
                       .str.strip().replace("None", "").any()]]
        out += [f"## {_chapter_title(name, root)}", "",
                f"{{doc}}`Read the chapter <chapters/{name}>`.", "", _table(shown), "",
                "```bash", f"papermill book/chapters/{name}.ipynb out.ipynb -p profile tiny",
                "```", ""]
    return "\n".join(out)


# ---------------------------------------------------------------- reproducibility

def book_parameters(root: Path | None = None) -> dict:
    """The parameters the executed chapters were run with (from papermill's metadata)."""
    import nbformat

    from .runner import book_dir, toc_chapters

    for name in reversed(toc_chapters(root)):
        path = book_dir(root) / "chapters" / f"{name}.ipynb"
        if path.exists():
            meta = nbformat.read(path, as_version=4).metadata.get("papermill", {})
            return dict(meta.get("parameters", {}))
    return {}


def record_table(results_dir: Path) -> pd.DataFrame:
    """Every stored fit: chapter, model, maps, protocol, fold, repeat, seed, cohort
    fingerprint, configuration hash and the package versions it was made with."""
    rows = []
    for rec in ResultsStore(results_dir).records():
        key, versions = rec.key, rec.info.get("versions", {})
        rows.append({"chapter": key.get("chapter"), "model": rec.name,
                     "maps": rec.maps_label, "protocol": key.get("protocol"),
                     "fold": key.get("fold"), "repeat": key.get("repeat"),
                     "seed": key.get("seed"),
                     "cohort": key.get("config", {}).get("cohort", "—"),
                     "hash": rec.info.get("hash", rec.path.name),
                     "versions": ", ".join(f"{k} {v}" for k, v in sorted(versions.items()))
                     or "not recorded"})
    return pd.DataFrame(rows, columns=["chapter", "model", "maps", "protocol", "fold",
                                       "repeat", "seed", "cohort", "hash", "versions"])


def _joined(values, limit: int = 4) -> str:
    vals = sorted({str(v) for v in values})
    shown = ", ".join(f"`{v[:10]}`" for v in vals[:limit])
    return shown + (f" and {len(vals) - limit} more" if len(vals) > limit else "")


def reproducibility_page(root: Path | None = None) -> str:
    """The Markdown of the reproducibility appendix, read from the results store."""
    root = root or project_root()
    params = book_parameters(root)
    profile = get_profile(params.get("profile", "quick"))
    results = Path(params["results_dir"]) if params.get("results_dir") \
        else default_paths(profile, root)["results"]
    records = record_table(results)
    env = pd.DataFrame([{"package": k, "version": v} for k, v in package_versions(BUILD_PACKAGES).items()])
    prof = profile.as_dict()
    prof_table = pd.DataFrame([{"setting": k, "value": f"`{v}`"} for k, v in prof.items()])
    out = ["(reproducibility)=", "# Reproducibility", "",
           f"The chapters of this build were executed with profile `{profile.name}` "
           f"(configuration hash `{config_hash(prof)}`), storing their fits under "
           f"`{results.relative_to(root) if results.is_relative_to(root) else results}`. "
           "Everything below is read from that results store and from this environment "
           "when the book is built.", "",
           "## Profile", "", _table(prof_table), "",
           "## Data", ""]
    if records.empty:
        out += ["The results store holds no fits yet.", ""]
    else:
        cohorts = records.groupby("cohort").size().rename("fits").reset_index()
        cohorts["cohort"] = [f"`{c}`" for c in cohorts["cohort"]]
        out += ["Every fit's key carries the fingerprint of the cohort it was made on (a hash "
                "of `participants.tsv` and of every map file's content); chapters never mix "
                "fits of another cohort.", "",
                _table(cohorts.rename(columns={"cohort": "cohort fingerprint"})), "",
                "## Fits, seeds and configuration hashes", "",
                "One row per model and map set; each fit is a folder named by the hash of "
                "its full configuration.", ""]
        groups = records.groupby(["chapter", "model", "maps", "protocol"], dropna=False)
        table = groups.agg(fits=("hash", "size"),
                           seeds=("seed", lambda s: ", ".join(map(str, sorted(set(s))))),
                           hashes=("hash", _joined)).reset_index()
        out += [_table(table), ""]
        versions = records.groupby("versions").size().rename("fits").reset_index()
        out += ["## Package versions the fits were made with", "",
                _table(versions.rename(columns={"versions": "versions recorded"})), ""]
    out += ["## This build's environment", "",
            f"Python {sys.version.split()[0]} on {platform.platform()} "
            f"({platform.machine()}).", "", _table(env), ""]
    return "\n".join(out)


def write_generated_pages(root: Path | None = None) -> list[Path]:
    """Write the parameters page and the reproducibility appendix into `book/`; a page
    is rewritten only when its text changed, so Sphinx re-reads only what changed."""
    from .runner import book_dir

    root = root or project_root()
    texts = {"parameters.md": parameters_page(root),
             "reproducibility.md": reproducibility_page(root)}
    written = []
    for name, text in texts.items():
        path = book_dir(root) / name
        if not path.exists() or path.read_text() != text:
            write_text(path, text)
        written.append(path)
    return written
