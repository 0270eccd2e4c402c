"""The import graph flows one way: nothing in a lower layer imports from a higher one."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "mri3dcnn"

#: the layers, lowest first; a module may import from its own layer and the ones before
LAYERS = [
    ("data", {"config", "maps", "atomic", "hardware", "space", "synthetic", "cohort",
              "derivatives", "volumes", "splits", "atlas", "manifest", "prepare", "features",
              "torchpickle"}),
    ("models", {"models", "recipes", "preprocessing"}),
    ("training", {"crossval", "training", "svm", "pretrained2d"}),
    ("results", {"results"}),
    ("evaluation", {"stats", "claims", "saliency", "sweep", "export", "fair"}),
    ("plots", {"plots", "views", "tables"}),
    ("book", {"study", "grid", "runner", "bookpages", "book_ext", "cli", "__init__", "__main__"}),
]
LAYER_OF = {module: i for i, (_, modules) in enumerate(LAYERS) for module in modules}


def _module(path: Path) -> str:
    """`models/blocks.py` and `synthetic/truth.py` belong to their package's layer."""
    rel = path.relative_to(PACKAGE)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def _imports(path: Path) -> set[str]:
    """First-level mri3dcnn modules a file imports (relative or absolute)."""
    tree = ast.parse(path.read_text())
    depth = len(path.relative_to(PACKAGE).parts)  # 1 for the package's own modules
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level == 0 and (node.module or "").startswith("mri3dcnn"):
                parts = node.module.split(".")[1:]
            elif node.level >= depth and node.level > 0:
                parts = (node.module or "").split(".") if node.module else []
                if node.level > depth or not parts:
                    parts = [a.name for a in node.names]
            else:
                continue  # within a subpackage
            if parts and parts[0]:
                out.add(parts[0])
            else:
                out.update(a.name for a in node.names)
        elif isinstance(node, ast.Import):
            out.update(a.name.split(".")[1] for a in node.names
                       if a.name.startswith("mri3dcnn."))
    return out


FILES = sorted(PACKAGE.rglob("*.py"))


def test_every_module_has_a_layer():
    missing = {_module(p) for p in FILES} - set(LAYER_OF)
    assert not missing, f"place {sorted(missing)} in LAYERS"


@pytest.mark.parametrize("path", FILES, ids=[str(p.relative_to(PACKAGE)) for p in FILES])
def test_imports_flow_one_way(path):
    here = LAYER_OF[_module(path)]
    upward = {m: LAYERS[LAYER_OF[m]][0] for m in _imports(path)
              if m in LAYER_OF and LAYER_OF[m] > here}
    assert not upward, (f"{path.relative_to(PACKAGE)} ({LAYERS[here][0]}) imports from "
                        f"higher layers: {upward}")


def test_the_check_reads_relative_and_absolute_imports():
    study, blocks = PACKAGE / "study.py", PACKAGE / "models" / "blocks.py"
    assert {"crossval", "results", "cohort"} <= _imports(study)
    assert "models" not in _imports(blocks)  # inside its own package
    assert _module(blocks) == "models"
    assert LAYER_OF["study"] > LAYER_OF["results"] > LAYER_OF["crossval"]
