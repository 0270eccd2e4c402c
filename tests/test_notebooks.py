"""Notebooks show, the library computes: no chapter cell holds logic of its own."""

import ast
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.py"))
#: statements and expressions that compute in a cell instead of calling the library
LOGIC = (ast.For, ast.AsyncFor, ast.While, ast.If, ast.IfExp, ast.ListComp, ast.SetComp,
         ast.DictComp, ast.GeneratorExp, ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda,
         ast.ClassDef, ast.Try, ast.With, ast.Match)


def logic_in(source: str) -> list[str]:
    """Each piece of logic in a Jupytext percent-format file, as `line: node`."""
    return sorted(f"line {node.lineno}: {type(node).__name__}"
                  for node in ast.walk(ast.parse(source)) if isinstance(node, LOGIC))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_chapter_cells_hold_no_logic(path):
    found = logic_in(path.read_text())
    assert not found, (f"{path.name} computes in its cells ({', '.join(found)}): move the "
                       "logic into src/mri3dcnn and call it from the chapter.")


def test_the_check_sees_logic():
    assert logic_in("x = [a for a in b]\nif x:\n    y = 1\nf = lambda: 0\n") == [
        "line 1: ListComp", "line 2: If", "line 4: Lambda"]
    assert logic_in("study = Study.open(p)\ndisplay(plots.ci_table(study.summary()))\n") == []
