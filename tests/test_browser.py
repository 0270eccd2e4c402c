"""The built site as a reader's browser meets it: every page opened in headless Chromium
with the network cut off. A page passes when nothing it asks for fails, nothing logs an
error, its math is typeset and its interactive brain views are drawn.

Uses Debian's `chromium` driven by Playwright (no browser download); skipped, saying why,
where either is missing. `MRI3DCNN_SITE=book/_build/html` checks the site already built
instead of building the tiny book.
"""

import os
import shutil
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("CHROMIUM") or shutil.which("chromium") \
    or shutil.which("chromium-browser")
LOCAL = ("file:", "data:", "about:", "blob:")
ROOT = Path(__file__).resolve().parents[1]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None, reason="no Chromium: `apt-get install chromium` "
                       "(Debian) to run the browser check of the built site"),
]


def _pages(html: Path) -> list[Path]:
    """Every page, less the redirect stubs (index.html points to the landing page), which
    the browser would leave while the next page loads."""
    pages = [p for p in html.rglob("*.html")
             if not {"_static", "_sources", "_images"} & set(p.relative_to(html).parts)]
    return sorted(p for p in pages if 'http-equiv="Refresh"' not in p.read_text()[:500])


#: each numbered table in a chapter's outputs: how far it runs past its text column
_TABLE_OVERFLOW = """() => [...document.querySelectorAll('.cell_output table')].map(t => {
  const box = t.closest('.pst-scrollable-table-container') || t.parentElement;
  const n = t.querySelector('caption .caption-number');
  return {table: n ? n.textContent.trim() : t.id || 'an unnumbered table',
          over: t.scrollWidth - box.clientWidth};
}).filter(t => t.over > 1)"""


def _open(page, path: Path, problems: list[str]) -> None:
    page.goto(path.as_uri(), wait_until="load")
    if page.locator(".math").count():
        page.wait_for_function("() => window.MathJax && MathJax.startup "
                               "&& MathJax.startup.document", timeout=20_000)
        page.evaluate("() => MathJax.startup.promise")
        if not page.locator("mjx-container").count():
            problems.append(f"{path.name}: math is not typeset")
    frames = page.locator(".cell_output iframe")
    for i in range(frames.count()):
        frame = frames.nth(i).content_frame
        try:
            frame.locator("canvas").first.wait_for(state="attached", timeout=10_000)
        except Exception:  # noqa: BLE001 - any failure to draw is the finding
            problems.append(f"{path.name}: interactive view {i + 1} draws no canvas")


def test_every_page_renders_offline(tiny_book):
    sync_api = pytest.importorskip("playwright.sync_api",
                                   reason="Playwright for Python is not installed")
    html = tiny_book
    shots = html.parent / "screenshots"
    shots.mkdir(exist_ok=True)
    problems: list[str] = []
    where = {"page": ""}

    def route(r):
        if r.request.url.startswith(LOCAL):
            r.continue_()
        else:
            problems.append(f"{where['page']}: remote request {r.request.url}")
            r.abort()

    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                                     args=["--no-sandbox"])
        context = browser.new_context(viewport={"width": 1400, "height": 900})
        context.route("**/*", route)
        page = context.new_page()
        page.on("console", lambda m: m.type == "error" and problems.append(
            f"{where['page']}: console error {m.text}"))
        page.on("pageerror", lambda e: problems.append(f"{where['page']}: {e}"))
        page.on("requestfailed", lambda r: r.url.startswith(LOCAL) and problems.append(
            f"{where['page']}: failed request {r.url} ({r.failure})"))
        pages = _pages(html)
        for path in pages:
            where["page"] = str(path.relative_to(html))
            _open(page, path, problems)
            if path.name == "intro.html" and path.parent == html:  # the landing page
                page.screenshot(path=shots / "landing.png", full_page=True)
            if path.name == "02_svm.html":
                page.screenshot(path=shots / "02_svm.png", full_page=True)
            if path.parent.name == "chapters":  # a paper's tables fit its page
                problems += [f"{path.name}: {t['table']} runs {t['over']} px past the text"
                             for t in page.evaluate(_TABLE_OVERFLOW)]
                if path.name == "09_summary.html":
                    page.screenshot(path=shots / "09_summary.png", full_page=True)
        views = 0
        for name in ("02_svm", "08_saliency"):
            page.goto((html / "chapters" / f"{name}.html").as_uri(), wait_until="load")
            views += page.locator(".cell_output iframe").count()
        browser.close()
    assert len(pages) > 10
    if views < 2:
        problems.append("the SVM weights and the group saliency map have no 3D view")
    assert (shots / "landing.png").exists() and (shots / "02_svm.png").exists()
    # kept beside the project's own build, where a reader of the test log looks for them
    keep = ROOT / "book" / "_build" / "screenshots"
    if shots.resolve() != keep.resolve():
        shutil.copytree(shots, keep, dirs_exist_ok=True)
    assert not problems, "\n".join(problems)
