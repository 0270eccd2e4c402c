"""`mri3dcnn synth | data | models | run | book | bench`: the library from a terminal."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .config import PROFILES


def _synth(a: argparse.Namespace) -> None:
    from .synthetic import generate_cohort, read_truth

    out = generate_cohort(a.out, n_subjects=a.subjects, seed=a.seed, grid_mm=a.grid_mm,
                          effects=a.effects, n_sites=a.sites, null=a.null, progress=True)
    t = read_truth(out)
    print(f"{out}: {t['n_subjects']} subjects, {len(t['effects']['regions'])} planted regions"
          f"{' (null: every effect at zero)' if t['null'] else ''}, oracle accuracy "
          f"{t['oracle_accuracy']:.3f}, Bayes ceiling (region means) "
          f"{t['bayes_ceiling']['balanced_accuracy']:.3f}")


def _data(a: argparse.Namespace) -> None:
    from .manifest import fetch_all

    for name, path in fetch_all(a.manifest, a.dest, a.names or None).items():
        print(f"{name}: {path}")


def _models(a: argparse.Namespace) -> None:
    from .models import FAMILIES, build

    for name in a.names or FAMILIES:
        model = build(name, a.maps, tuple(a.grid), fusion=a.fusion, compile=False)
        if not a.brief:
            model.summary()
        print(f"{name:20s} {'+'.join(a.maps):12s} {model.count_params():>12,d} parameters")


def _book(a: argparse.Namespace) -> None:
    from .runner import build_book, execute_book

    if not a.no_execute:
        execute_book(a.profile, chapters=a.chapters or None)
    if not a.no_build:
        print(f"site: {build_book()}")


def _run(a: argparse.Namespace) -> None:
    from .runner import execute_book

    for p in execute_book(a.profile, chapters=a.chapters):
        print(p)


def _bench(a: argparse.Namespace) -> None:
    import runpy

    root = Path(__file__).resolve().parents[2]
    sys.argv = [str(root / "benchmarks" / "run.py"), *a.args]
    runpy.run_path(sys.argv[0], run_name="__main__")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="mri3dcnn", description=__doc__)
    sub = ap.add_subparsers(dest="cmd", required=True)

    s = sub.add_parser("synth", help="generate a synthetic cohort with known ground truth")
    s.add_argument("--out", required=True, type=Path)
    s.add_argument("--subjects", type=int, default=PROFILES["quick"].n_subjects)
    s.add_argument("--seed", type=int, default=2020)
    s.add_argument("--grid-mm", type=float, default=PROFILES["quick"].grid_mm)
    s.add_argument("--sites", type=int, default=3)
    s.add_argument("--effects", type=Path, default=None,
                   help="YAML with planted regions (name, map, d, centers, radius_mm) and "
                        "patient patterns; default: the package's effects.yaml")
    s.add_argument("--null", action="store_true",
                   help="the null cohort: same regions and nuisances, every effect at zero")
    s.set_defaults(func=_synth)

    d = sub.add_parser("data", help="fetch and verify the files data_manifest.yaml names")
    d.add_argument("names", nargs="*")
    d.add_argument("--manifest", type=Path, default=Path("data_manifest.yaml"))
    d.add_argument("--dest", type=Path, default=Path("data/downloads"))
    d.set_defaults(func=_data)

    m = sub.add_parser("models", help="layer summaries and parameter counts")
    m.add_argument("names", nargs="*")
    m.add_argument("--grid", type=int, nargs=3, default=(61, 73, 61))
    m.add_argument("--maps", nargs="+", default=["gm"])
    m.add_argument("--fusion", default="branch", choices=["branch", "channel"])
    m.add_argument("--brief", action="store_true", help="parameter counts only, no layers")
    m.set_defaults(func=_models)

    for name, func, helptext in (("book", _book, "execute chapters and build the book"),
                                 ("run", _run, "execute chapters with papermill only")):
        b = sub.add_parser(name, help=helptext)
        b.add_argument("--profile", default="quick", choices=sorted(PROFILES))
        b.add_argument("--chapters", nargs="*", default=None)
        if name == "book":
            b.add_argument("--no-execute", action="store_true")
            b.add_argument("--no-build", action="store_true")
        b.set_defaults(func=func)

    be = sub.add_parser("bench", help="run benchmarks/run.py")
    be.add_argument("args", nargs=argparse.REMAINDER)
    be.set_defaults(func=_bench)

    a = ap.parse_args(argv)
    a.func(a)
    return 0


if __name__ == "__main__":
    sys.exit(main())
