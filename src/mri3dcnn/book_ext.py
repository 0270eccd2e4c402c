"""Sphinx extension used by `book/_config.yml`: no chapter is ever rendered empty, and the
computed pages are written before Sphinx reads the sources.

When a reader runs `jupyter-book build book/` by hand, chapters that papermill has not
executed yet are executed first (profile from `MRI3DCNN_PROFILE`, default `quick`), and
every chapter is checked to hold outputs and tagged for the page (code folded, the
injected-parameters cell removed). The parameters page and the reproducibility appendix
are generated from the chapters and the results store. MathJax is copied in for offline
math.
"""

from __future__ import annotations

import os
from pathlib import Path

from sphinx.application import Sphinx
from sphinx.errors import ExtensionError

from .bookpages import write_generated_pages
from .runner import (
    ChapterError,
    check_executed,
    execute_book,
    install_mathjax,
    prepare_for_book,
    toc_chapters,
)


def _ensure_chapters(app: Sphinx, config) -> None:
    book = Path(app.srcdir)
    root = book.parent
    try:
        install_mathjax(root)
        execute_book(os.environ.get("MRI3DCNN_PROFILE", "quick"), only_missing=True, root=root)
        for name in toc_chapters(root):
            path = book / "chapters" / f"{name}.ipynb"
            check_executed(path)
            prepare_for_book(path)
        write_generated_pages(root)
    except ChapterError as err:
        raise ExtensionError(str(err)) from err


def _script_key(js) -> str:
    name = js.filename or js.attributes.get("body", "")
    return str(name).split("?")[0]


def unique_scripts(scripts: list) -> list:
    """Each script once, first occurrence kept. The theme and MathJax register some twice
    (`THEBE_JS_URL` declared twice, MathJax loaded twice): errors in a reader's console."""
    seen, kept = set(), []
    for js in scripts:
        key = _script_key(js)
        if key and key in seen:
            continue
        seen.add(key)
        kept.append(js)
    return kept


def _dedupe_scripts(app: Sphinx, pagename, templatename, context, doctree) -> None:
    if "script_files" in context:
        context["script_files"][:] = unique_scripts(context["script_files"])


def setup(app: Sphinx) -> dict:
    app.connect("config-inited", _ensure_chapters)
    app.connect("html-page-context", _dedupe_scripts, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
