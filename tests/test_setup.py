"""The environment is described once: environment.yml mirrors requirements.txt."""

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _requirements() -> set[str]:
    lines = (ROOT / "requirements.txt").read_text().splitlines()
    return {line.strip() for line in lines if line.strip() and not line.startswith("#")}


def test_requirements_are_pinned():
    reqs = _requirements()
    assert reqs, "requirements.txt is empty"
    unpinned = [r for r in reqs if "==" not in r]
    assert not unpinned, f"unpinned requirements: {unpinned}"
    names = {r.split("==")[0].lower().replace("_", "-") for r in reqs}
    for needed in ("tensorflow-cpu", "keras", "nilearn", "papermill", "jupytext",
                   "jupyter-book", "django-static-mathjax"):
        assert needed in names, needed


def test_environment_yml_has_the_same_pins():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert "python=3.11" in env["dependencies"]
    assert {p for p in pip if not p.startswith("-e")} == _requirements()


def test_jupyter_book_is_version_1():
    jb = next(r for r in _requirements() if r.lower().startswith("jupyter-book=="))
    assert jb.split("==")[1].startswith("1."), jb


def test_ci_runs_make_test():
    assert "make test" in (ROOT / ".ci" / "run").read_text()
