"""The book pipeline: Jupytext chapters -> papermill -> executed notebooks -> Jupyter Book.

Chapters are `notebooks/NN_name.py` (Jupytext percent format, with a `parameters` cell).
Each is converted, executed with papermill and written to `book/chapters/NN_name.ipynb`;
the executed notebook lands only when the whole run succeeded, so the book never renders
a half-run chapter. Jupyter Book then renders with execution off.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

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
    from .study import ensure_synthetic_cohort

    root = root or project_root()
    p = get_profile(profile)
    names = chapters or toc_chapters(root)
    todo = [n for n in names
            if not (only_missing and (book_dir(root) / "chapters" / f"{n}.ipynb").exists())]
    if todo and not (extra_parameters or {}).get("cohort_dir"):
        print(f"mri3dcnn: preparing the {p.name} synthetic cohort", flush=True)
        ensure_synthetic_cohort(p, progress=sys.stderr.isatty())
    out = []
    for n in todo:
        print(f"mri3dcnn: executing {n} (profile {p.label})", flush=True)
        out.append(execute_chapter(n, {"profile": p.name, **(extra_parameters or {})}, root))
    return out


def build_book(root: Path | None = None) -> Path:
    """`jupyter-book build book/`, failing on errors."""
    root = root or project_root()
    install_mathjax(root)
    exe = Path(sys.executable).parent / "jupyter-book"
    cmd = [str(exe) if exe.exists() else "jupyter-book", "build", str(book_dir(root))]
    subprocess.run(cmd, check=True, cwd=root)
    return book_dir(root) / "_build" / "html" / "index.html"
