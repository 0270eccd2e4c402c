"""The book pipeline: Jupytext chapters -> papermill -> executed notebooks -> Jupyter Book.

Chapters are `notebooks/NN_name.py` (Jupytext percent format, with a `parameters` cell).
Each is converted, executed with papermill and written to `book/chapters/NN_name.ipynb`;
the executed notebook lands only when the whole run succeeded, so the book never renders
a half-run chapter. Jupyter Book then renders with execution off, warnings as errors.

On the page a chapter reads like a paper: code cells are folded (`hide-input`) except the
parameters cell, and the cell papermill injects with the run's parameters is removed from
the page (it stays in the notebook, where papermill and readers of the .ipynb find it).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

from .atomic import write_text as atomic_write_text
from .config import Profile, get_profile, project_root


class ChapterError(RuntimeError):
    """A chapter failed to execute, or an executed chapter is missing or empty."""


def book_dir(root: Path | None = None) -> Path:
    return (root or project_root()) / "book"


def toc_chapters(root: Path | None = None) -> list[str]:
    """Chapter names (e.g. `01_data`) in the order of `book/_toc.yml`."""
    toc = yaml.safe_load((book_dir(root) / "_toc.yml").read_text())
    names = []
    for part in toc.get("parts", [{"chapters": toc.get("chapters", [])}]):
        for entry in part.get("chapters", []):
            f = entry.get("file", "")
            if f.startswith("chapters/"):
                names.append(f.removeprefix("chapters/"))
    return names


def chapter_source(name: str, root: Path | None = None) -> Path:
    src = (root or project_root()) / "notebooks" / f"{name}.py"
    if not src.exists():
        raise ChapterError(f"Chapter {name}: {src} does not exist; _toc.yml and notebooks/ "
                           "must list the same chapters.")
    return src


def tag_for_book(nb) -> bool:
    """Fold code cells, keep the parameters cell open, remove the injected-parameters cell.

    Returns whether any tag changed. Cells tagged by hand (`remove-*`, `hide-*`) keep
    their own tags.
    """
    changed = False
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        tags = cell.setdefault("metadata", {}).setdefault("tags", [])
        if "injected-parameters" in tags:
            wanted = "remove-cell"
        elif "parameters" in tags or any(t.startswith(("remove-", "hide-")) for t in tags):
            continue
        else:
            wanted = "hide-input"
        if wanted not in tags:
            tags.append(wanted)
            changed = True
    return changed


def split_figures(nb) -> bool:
    """Give each captioned figure a cell of its own.

    A chapter captions a figure in its cell's metadata (`mystnb: figure: caption, name`),
    but myst-nb wraps *every* output of that cell in the figure, so a cell that also shows
    a table would give the table the caption and the figure's label twice. The figure's
    image moves into a cell of its own, right after the code that drew it, and the outputs
    that followed it into another; both show no code. Returns whether anything changed.
    """
    import nbformat

    changed = False
    cells = []
    for cell in nb.cells:
        figure = cell.get("metadata", {}).get("mystnb", {}).get("figure")
        outputs = cell.get("outputs", []) if cell.cell_type == "code" else []
        images = [i for i, o in enumerate(outputs)
                  if any(k.startswith("image/") for k in o.get("data", {}))]
        if not figure or not images or len(outputs) == 1:
            cells.append(cell)
            continue
        i = images[0]
        del cell.metadata["mystnb"]["figure"]
        before, image, after = outputs[:i], outputs[i], outputs[i + 1:]
        cell.outputs = before
        cells.append(cell)
        for outs, meta in (([image], {"mystnb": {"figure": figure}}), (after, {})):
            if outs:
                # a cell needs a source to be rendered at all; it is not shown
                extra = nbformat.v4.new_code_cell("# outputs of the cell above",
                                                  metadata={**meta, "tags": ["remove-input"]})
                extra.outputs = outs
                cells.append(extra)
        changed = True
    nb.cells = cells
    return changed


# TensorFlow's C++ logging (absl) writes these to stderr before any Python setting applies
_TF_LOG_LINE = re.compile(r"^(WARNING: All log messages before absl::InitializeLog\(\)"
                          r"|[IWEF]\d{4} [\d:.]+ +\d+ \S+:\d+\])")


def drop_library_logs(nb) -> bool:
    """Remove TensorFlow's C++ log lines from stderr outputs: noise on a page, and not
    the chapter's. Other stderr (a Python warning) stays. Returns whether anything changed."""
    changed = False
    for cell in nb.cells:
        kept = []
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream" and out.get("name") == "stderr":
                lines = out["text"].splitlines(keepends=True)
                clean = [ln for ln in lines if not _TF_LOG_LINE.match(ln)]
                if len(clean) != len(lines):
                    changed = True
                    if not "".join(clean).strip():
                        continue
                    out["text"] = "".join(clean)
            kept.append(out)
        if cell.cell_type == "code":
            cell.outputs = kept
    return changed


def prepare_for_book(path: Path) -> None:
    """Prepare an executed chapter for the page (`drop_library_logs`, `split_figures`,
    `tag_for_book`), in place if needed."""
    import nbformat

    nb = nbformat.read(path, as_version=4)
    if drop_library_logs(nb) | split_figures(nb) | tag_for_book(nb):
        atomic_write_text(path, nbformat.writes(nb))


def execute_chapter(name: str, parameters: dict, root: Path | None = None,
                    progress: bool | None = None) -> Path:
    """Convert and execute one chapter; the output notebook appears only on success."""
    import jupytext
    import nbformat
    import papermill as pm

    root = root or project_root()
    src = chapter_source(name, root)
    out_dir = book_dir(root) / "chapters"
    out_dir.mkdir(parents=True, exist_ok=True)
    final = out_dir / f"{name}.ipynb"
    nb = jupytext.read(src)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    os.environ["MRI3DCNN_HOME"] = str(root)
    # the kernel inherits this environment: figures must go to the notebook, not to Agg
    os.environ["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
    # TensorFlow's C++ log lines (oneDNN notices, graph attribute warnings) are noise in a book
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    with tempfile.TemporaryDirectory(prefix=f"{name}-", dir=out_dir) as tmp:
        src_nb, out_nb = Path(tmp) / f"{name}.src.ipynb", Path(tmp) / f"{name}.ipynb"
        nbformat.write(nb, src_nb)
        try:
            pm.execute_notebook(
                str(src_nb), str(out_nb), parameters=parameters, kernel_name="python3",
                cwd=str(out_dir), progress_bar=sys.stderr.isatty() if progress is None
                else progress, log_output=False,
            )
        except Exception as err:
            failed = out_dir / f".{name}.failed.ipynb"
            if out_nb.exists():
                shutil.copy(out_nb, failed)
            raise ChapterError(
                f"Chapter {name} failed: {err}\nThe partly executed notebook is {failed}."
            ) from err
        prepare_for_book(out_nb)
        os.replace(out_nb, final)
    return final


def check_executed(path: Path) -> None:
    """An executed chapter must exist and hold outputs, or the book would be silently empty."""
    import nbformat

    if not path.exists():
        raise ChapterError(f"{path} is missing: run `mri3dcnn book` or `make book`.")
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code" and c.source.strip()]
    if code and not any(c.get("outputs") for c in code):
        raise ChapterError(f"{path} has no outputs: it was not executed. Delete it and "
                           "rebuild, or run `mri3dcnn book`.")


def install_mathjax(root: Path | None = None) -> Path:
    """Copy MathJax (from the django-static-mathjax wheel) into the book's static files,
    so that math renders with no network."""
    import mathjax

    src = Path(mathjax.__file__).parent / "static" / "mathjax" / "es5" / "tex-svg.js"
    if not src.exists():
        raise ChapterError(f"MathJax not found at {src}; reinstall django-static-mathjax.")
    dest = book_dir(root) / "_static" / "mathjax" / "tex-svg.js"
    dest.parent.mkdir(parents=True, exist_ok=True)
    if not dest.exists() or dest.stat().st_size != src.stat().st_size:
        shutil.copyfile(src, dest)
    return dest


def execute_book(profile: str | Profile = "quick", chapters: list[str] | None = None,
                 only_missing: bool = False, root: Path | None = None,
                 extra_parameters: dict | None = None) -> list[Path]:
    """Execute chapters (all in the table of contents by default) with one profile."""
    root = root or project_root()
    p = get_profile(profile)
    names = chapters or toc_chapters(root)
    todo = [n for n in names
            if not (only_missing and (book_dir(root) / "chapters" / f"{n}.ipynb").exists())]
    if todo and not (extra_parameters or {}).get("cohort_dir"):
        # imported here: a book build with every chapter executed needs none of it
        from .study import ensure_synthetic_cohort

        print(f"mri3dcnn: preparing the {p.name} synthetic cohort", flush=True)
        ensure_synthetic_cohort(p, progress=sys.stderr.isatty())
    out = []
    for n in todo:
        print(f"mri3dcnn: executing {n} (profile {p.label})", flush=True)
        out.append(execute_chapter(n, {"profile": p.name, **(extra_parameters or {})}, root))
    return out


BUILD_FLAGS = ("-W",)  # a warning (a broken reference, a missing glue key) fails the build


def build_book(root: Path | None = None) -> Path:
    """`jupyter-book build -W book/`: any warning fails the build."""
    root = root or project_root()
    install_mathjax(root)
    exe = Path(sys.executable).parent / "jupyter-book"
    cmd = [str(exe) if exe.exists() else "jupyter-book", "build", *BUILD_FLAGS,
           str(book_dir(root))]
    subprocess.run(cmd, check=True, cwd=root)
    return book_dir(root) / "_build" / "html" / "index.html"
