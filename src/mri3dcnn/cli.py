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
    from .manifest import ManifestError, describe, fetch_all

    if a.list:
        for r in describe(a.manifest):
            size = "size ?" if r["bytes"] is None else f"{r['bytes'] / 1e6:.1f} MB"
            pinned = "pinned" if r["pinned"] else "NOT pinned"
            print(f"{r['name']}: {r['files']} file(s), {size}, {pinned}, -> {r['dest']}; "
                  f"{r['licence']}\n    {r['description']}")
        return
    try:
        fetched = fetch_all(a.manifest, a.dest, a.names or None, progress=not a.quiet)
    except ManifestError as err:
        raise SystemExit(f"mri3dcnn data: {err}") from None
    for name, path in fetched.items():
        print(f"{name}: {path}")


def _cohort(a: argparse.Namespace) -> None:
    from .cohort import Cohort, CohortError

    try:
        c = Cohort.from_bids(a.dir, a.maps, session=a.session, space=a.space, res=a.res)
    except CohortError as err:
        raise SystemExit(f"mri3dcnn cohort: {err}") from None
    chosen = ", ".join(f"{k}-{v}" for k, v in c.selection.items()) or "no choice needed"
    print(f"{c.name}: {len(c)} subjects, maps {'+'.join(c.maps)} ({chosen})")
    print(c.summary().to_string())


def _prepare(a: argparse.Namespace) -> None:
    from .cohort import CohortError
    from .prepare import PrepareConfig, PrepareError, prepare

    cfg = PrepareConfig(grid_mm=a.grid_mm, reg_mm=a.reg_mm, modulate=a.modulate,
                        session=a.session, group_column=a.group_column,
                        patients=tuple(a.patients), controls=tuple(a.controls),
                        t1_min_corr=a.t1_min_corr, fa_min_corr=a.fa_min_corr)
    try:
        qc = prepare(a.bids_dir, a.out_dir, cfg, n_jobs=a.jobs, progress=not a.quiet)
    except (PrepareError, CohortError) as err:
        raise SystemExit(f"mri3dcnn prepare: {err}") from None
    print(qc.drop(columns="error").to_string(index=False))
    for r in qc[qc["status"].isin(["failed", "missing", "excluded"])].itertuples():
        print(f"{r.participant_id} {r.status}: {r.error}")
    print(f"{a.out_dir}: {int(qc['status'].isin(['prepared', 'done before']).sum())} subjects "
          f"with maps, {int(qc['flagged'].sum())} flagged by QC (see qc.tsv and figures/)")


def _models(a: argparse.Namespace) -> None:
    from .models import FAMILIES, build

    for name in a.names or FAMILIES:
        model = build(name, a.maps, tuple(a.grid), fusion=a.fusion, compile=False)
        if not a.brief:
            model.summary()
        print(f"{name:20s} {'+'.join(a.maps):12s} {model.count_params():>12,d} parameters")


def _study_config(a: argparse.Namespace) -> tuple:
    """The profile and chapter parameters of `--config FILE`, or of `--profile`."""
    from .config import ConfigError, get_profile, read_study_config

    if a.config is None:
        return get_profile(a.profile), None
    try:
        cfg = read_study_config(a.config)
    except ConfigError as err:
        raise SystemExit(f"mri3dcnn {a.cmd}: {err}") from None
    return cfg.profile, cfg.parameters()


def _book(a: argparse.Namespace) -> None:
    from .runner import build_book, execute_book

    profile, parameters = _study_config(a)
    if not a.no_execute:
        execute_book(profile, chapters=a.chapters or None, extra_parameters=parameters)
    if not a.no_build:
        print(f"site: {build_book()}")


def _run(a: argparse.Namespace) -> None:
    from .runner import execute_book

    profile, parameters = _study_config(a)
    _grid_first(a, profile, parameters or {})
    for p in execute_book(profile, chapters=a.chapters, extra_parameters=parameters):
        print(p)


def _export(a: argparse.Namespace) -> None:
    from .config import default_paths
    from .export import ExportError, export_model, select_records
    from .results import ResultsStore

    profile, parameters = _study_config(a)
    results = a.results or (parameters or {}).get("results_dir") or default_paths(profile)[
        "results"]
    try:
        records = select_records(ResultsStore(results), a.family, a.maps, a.fusion,
                                 a.protocol, a.repeat, a.cohort, a.fold)
        out = export_model(records, a.out)
    except (ExportError, FileNotFoundError) as err:
        raise SystemExit(f"mri3dcnn export: {err}") from None
    print(f"{out}: {'ensemble of folds' if len(records) > 1 else 'fold'} "
          f"{', '.join(str(r.key['fold']) for r in records)}; see {out / 'MODEL_CARD.md'}")


def _predict(a: argparse.Namespace) -> None:
    from .export import ExportError, predict

    choose = {k: v for k, v in (("ses", a.session), ("space", a.space)) if v}
    try:
        table = predict(a.model_dir, a.cohort_dir, a.out, saliency=a.saliency, choose=choose)
    except ExportError as err:
        raise SystemExit(f"mri3dcnn predict: {err}") from None
    for note in table.attrs["notes"]:
        print(f"note: {note}")
    print(f"{a.out / 'predictions.tsv'}: {len(table)} subjects, "
          f"{(table.predicted_group == 'patient').sum()} predicted patients"
          + (f"; saliency maps in {a.out}/sub-*/" if a.saliency else ""))


# --- the unit grid: plan it, or fit it first (serially or on Dask) --------------------------


def _plan(a: argparse.Namespace) -> None:
    from .grid import make_plan

    profile, parameters = _study_config(a)
    parameters = parameters or {}
    plan = make_plan(profile, a.results or parameters.get("results_dir"),
                     a.cohort or parameters.get("cohort_dir"), a.throughput, a.workers)
    if not a.brief:
        with_units = plan.table if a.units else plan.summary()
        print(with_units.to_string(index=False))
    print(plan.estimate_line(), flush=True)


def _grid_first(a: argparse.Namespace, profile, parameters: dict) -> None:
    """With --workers or --scheduler, fit every missing unit before the chapters run."""
    if not (a.workers or a.scheduler):
        return
    from .grid import run_grid

    out = run_grid(profile, parameters.get("cohort_dir"), parameters.get("results_dir"),
                   workers=a.workers, scheduler=a.scheduler)
    print(f"mri3dcnn grid: {out['computed']} units fitted", flush=True)


def _add_plan_parser(sub) -> None:
    pl = sub.add_parser("plan", help="every unit of a profile, how many are stored, and the "
                                     "estimated time of the rest")
    pl.add_argument("--profile", default="quick", choices=sorted(PROFILES))
    pl.add_argument("--config", type=Path, default=None,
                    help="study configuration YAML (as for run); overrides --profile")
    pl.add_argument("--workers", type=int, default=1,
                    help="also estimate the time on this many workers")
    pl.add_argument("--throughput", type=Path, default=None,
                    help="throughput JSON to use instead of measuring on this machine")
    pl.add_argument("--results", type=Path, default=None, help="results store")
    pl.add_argument("--cohort", type=Path, default=None, help="cohort folder")
    pl.add_argument("--units", action="store_true", help="list every unit, not per chapter")
    pl.add_argument("--brief", action="store_true", help="the estimate line only")
    pl.set_defaults(func=_plan)


def _add_grid_options(parser: argparse.ArgumentParser) -> None:
    g = parser.add_mutually_exclusive_group()
    g.add_argument("--workers", type=int, default=None,
                   help="fit the grid first on a local Dask cluster of N worker processes")
    g.add_argument("--scheduler", default=None,
                   help="fit the grid first on the Dask scheduler at this address")


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
    d.add_argument("--dest", type=Path, default=Path("data/downloads"),
                   help="download root; an entry's dest is relative to it unless absolute")
    d.add_argument("--list", action="store_true",
                   help="show each entry's contents, size, licence and whether it is pinned")
    d.add_argument("--quiet", action="store_true", help="no progress bar")
    d.set_defaults(func=_data)

    pr = sub.add_parser("prepare", help="raw BIDS (T1w, DWI) -> GM, WM, FA, MD maps in MNI space")
    pr.add_argument("bids_dir", type=Path)
    pr.add_argument("out_dir", type=Path)
    pr.add_argument("--grid-mm", type=float, default=PROFILES["full"].grid_mm,
                    help="grid of the maps written (the loader resamples to each profile's)")
    pr.add_argument("--reg-mm", type=float, default=2.0, help="template grid of registration")
    pr.add_argument("--modulate", action="store_true",
                    help="multiply GM/WM by the Jacobian determinant (tissue volume kept)")
    pr.add_argument("--session", default=None, help="visit (ses-) where subjects have several")
    pr.add_argument("--group-column", default="group",
                    help="participants.tsv column with the diagnosis (ds000030: diagnosis)")
    pr.add_argument("--patients", nargs="+", default=["patient"],
                    help="values of that column meaning patient (ds000030: SCHZ)")
    pr.add_argument("--controls", nargs="+", default=["control"],
                    help="values meaning control (ds000030: CONTROL)")
    pr.add_argument("--t1-min-corr", type=float, default=0.8,
                    help="flag T1w registrations whose correlation with the template is lower")
    pr.add_argument("--fa-min-corr", type=float, default=0.3,
                    help="flag DWI registrations whose FA-to-template-WM correlation is lower")
    pr.add_argument("--jobs", type=int, default=1, help="subjects prepared in parallel")
    pr.add_argument("--quiet", action="store_true", help="no progress bar")
    pr.set_defaults(func=_prepare)

    c = sub.add_parser("cohort", help="check a BIDS-derivatives cohort folder and summarise it")
    c.add_argument("dir", type=Path)
    c.add_argument("--maps", nargs="+", default=["gm", "wm", "fa", "md"])
    for flag, what in (("--session", "visit (ses-)"), ("--space", "template space (space-)"),
                       ("--res", "resolution (res-)")):
        c.add_argument(flag, default=None,
                       help=f"the {what} to use where a subject has several")
    c.set_defaults(func=_cohort)

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
        b.add_argument("--config", type=Path, default=None,
                       help="study configuration YAML (profile: NAME, or extends: NAME plus "
                            "settings; cohort_dir; results_dir); overrides --profile")
        if name == "book":
            b.add_argument("--no-execute", action="store_true")
            b.add_argument("--no-build", action="store_true")
        else:
            _add_grid_options(b)
        b.set_defaults(func=func)
    _add_plan_parser(sub)

    ex = sub.add_parser("export", help="a stored CNN (fold model or fold ensemble) as one "
                        "folder: .keras with its normalisation, study grid and maps, model card")
    ex.add_argument("out", type=Path, help="the folder to write")
    ex.add_argument("--family", required=True, help="CNN family, e.g. sequential_2")
    ex.add_argument("--maps", nargs="+", default=["gm"])
    ex.add_argument("--fusion", default=None, choices=["none", "branch", "channel"],
                    help="default: branch for several maps")
    ex.add_argument("--protocol", default="inner", choices=["inner", "published", "traced"])
    ex.add_argument("--repeat", type=int, default=0)
    ex.add_argument("--fold", type=int, default=None,
                    help="export this fold's model; default: the ensemble of every fold")
    ex.add_argument("--cohort", default=None,
                    help="cohort fingerprint, where the store holds fits on several")
    ex.add_argument("--profile", default="quick", choices=sorted(PROFILES))
    ex.add_argument("--config", type=Path, default=None, help="study configuration YAML")
    ex.add_argument("--results", type=Path, default=None,
                    help="results store; default: the profile's or the configuration's")
    ex.set_defaults(func=_export)

    pd_ = sub.add_parser("predict", help="score new subjects' maps with an exported model")
    pd_.add_argument("model_dir", type=Path)
    pd_.add_argument("cohort_dir", type=Path)
    pd_.add_argument("--out", type=Path, default=Path("predictions"),
                     help="output folder, a BIDS-derivatives dataset: predictions.tsv "
                          "(participant_id, probability, predicted_group, resampled) with "
                          "its JSON sidecar, dataset_description.json")
    pd_.add_argument("--saliency", action="store_true",
                     help="also write gradient saliency NIfTI maps (with JSON sidecars) per "
                          "subject and map into the subjects' folders of --out")
    pd_.add_argument("--session", default=None, help="visit (ses-) where subjects have several")
    pd_.add_argument("--space", default=None, help="space (space-) where maps have several")
    pd_.set_defaults(func=_predict)

    be = sub.add_parser("bench", help="run benchmarks/run.py")
    be.add_argument("args", nargs=argparse.REMAINDER)
    be.set_defaults(func=_bench)

    a = ap.parse_args(argv)
    a.func(a)
    return 0


if __name__ == "__main__":
    sys.exit(main())
