"""The unit grid: the units a profile defines, the chapters' exact keys, serial and Dask runs."""

import ast
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

from mri3dcnn import grid
from mri3dcnn.cli import main
from mri3dcnn.config import get_profile
from mri3dcnn.study import Study

ROOT = Path(__file__).resolve().parents[1]


def _expected_units(name: str) -> int:
    """The profile's grid counted from its fields and the chapters' parameters."""
    p = get_profile(name)
    per_model = p.n_folds * p.n_repeats
    n_maps = 4  # chapter 2 compares gm, wm, fa and md
    # one per map, concatenated, RBF, regional means, whole-brain measures, Decoder, chance
    svm = n_maps + 6
    fusion = len(p.fusion_maps)
    two_d = 4 * (fusion + (fusion > 1))  # four backbones, per map and joined
    sets = {tuple(m) for m in p.cnn_map_sets}
    cnn = (len(p.sequential_models) + 2 + 2) * len(sets)
    # chapter 7: channel fusion, late fusion, the traced and the published protocol are
    # new; single maps and branch fusion only where chapters 4-6 did not fit them
    ch7 = 4 + sum((m,) not in sets for m in p.fusion_maps) + (tuple(p.fusion_maps) not in sets)
    # chapter 10: modern nets and originals under the modern recipe, pretrained nets
    ch10 = len({*p.fair_modern, *p.fair_originals}) + len(p.fair_pretrained)
    # + chapter 8's null model
    return (svm + two_d + cnn + ch7 + ch10) * per_model + p.n_repeats


@pytest.mark.parametrize("name", ["tiny", "quick", "full"])
def test_units_match_the_profile(name):
    assert len(grid.units(name)) == _expected_units(name)


def test_full_has_the_studys_cnn_fits():
    t = grid.units("full")
    cnn = t[(t.kind == "cnn") & t.notebook.isin(["04_sequential", "05_inception",
                                                 "06_inception_resnet"])]
    assert len(cnn) == 7 * 5 * 50
    assert not t.duplicated([*grid.UNIT_COLUMNS[2:]]).any()


def test_plan_full_prints_its_unit_count(tmp_path, capsys):
    tp = tmp_path / "tp.json"
    tp.write_text(json.dumps({"cnn": {"sequential_2": {"overhead_s": 10.0, "train_per_s": 20.0,
                                                       "infer_per_s": 60.0}},
                              "svm_s": 1.0}))
    main(["plan", "--profile", "full", "--throughput", str(tp), "--workers", "4",
          "--results", str(tmp_path / "results"), "--cohort", str(tmp_path / "none")])
    out = capsys.readouterr().out
    assert f"{_expected_units('full')} units, 0 stored" in out
    assert "on 4 workers" in out


def test_plan_reads_a_study_configuration(tmp_path, capsys):
    import yaml

    from mri3dcnn.config import read_study_config

    tp = tmp_path / "tp.json"
    tp.write_text(json.dumps({"cnn": {"sequential_2": {"overhead_s": 1.0, "train_per_s": 20.0,
                                                       "infer_per_s": 60.0}},
                              "svm_s": 1.0}))
    cfg = tmp_path / "study.yaml"
    cfg.write_text(yaml.safe_dump({"profile": {"extends": "full", "n_repeats": 2},
                                   "cohort_dir": "none", "results_dir": "results"}))
    main(["plan", "--config", str(cfg), "--throughput", str(tp), "--brief"])
    n = len(grid.units(read_study_config(cfg).profile))
    full = get_profile("full")
    models = (_expected_units("full") - full.n_repeats) // (full.n_folds * full.n_repeats)
    assert n == models * full.n_folds * 2 + 2
    assert f"{n} units, 0 stored" in capsys.readouterr().out


def _parameters(notebook: str) -> dict:
    """The assignments of a chapter's parameters cell."""
    text = (ROOT / "notebooks" / f"{notebook}.py").read_text()
    cell = text.split('# %% tags=["parameters"]')[1].split("# %%")[0]
    return {n.targets[0].id: ast.literal_eval(n.value) for n in ast.parse(cell).body}


def test_grid_uses_the_chapters_default_parameters():
    assert tuple(_parameters("02_svm")["maps"]) == grid.SVM_MAPS
    assert tuple(_parameters("03_pretrained_2d")["backbones"]) == grid.BACKBONES
    assert _parameters("03_pretrained_2d")["n_per_axis"] == grid.N_PER_AXIS
    assert tuple(_parameters("05_inception")["models"]) == grid.INCEPTION
    assert tuple(_parameters("06_inception_resnet")["models"]) == grid.INCEPTION_RESNET


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    """A project home with the tiny cohort: workers find the cohort and cache through it."""
    from mri3dcnn.synthetic import generate_cohort

    root = tmp_path_factory.mktemp("home")
    cohort = generate_cohort(root / "cohort", n_subjects=24, seed=1, grid_mm=8.0,
                             n_sites=3, progress=False)
    return root, cohort


def _study(home, results: str) -> Study:
    root, cohort = home
    os.environ["MRI3DCNN_HOME"] = str(root)
    return Study.open("tiny", cohort, root / results)


def test_grid_keys_are_the_chapters_keys(home):
    study = _study(home, "keys")
    models = grid.chapter_models("tiny")
    svm = [m for m in models if m.kind == "svm"]
    assert [(m.family, m.maps, m.features) for m in svm] == [
        (m.spec.family, m.spec.maps, m.spec.features) for m in study.svm_models(grid.SVM_MAPS)]
    cnn = next(m for m in models if m.kind == "cnn")
    assert grid.unit_keys(study, cnn) == study.unit_keys(study.cnn(cnn.family, cnn.maps))
    # a record stored under a chapter's key is what the plan counts as stored
    key = study.unit_keys(study.cnn(cnn.family, cnn.maps))[1]
    study.store.put(key, pd.DataFrame({"participant_id": ["x"], "set": ["cv"],
                                       "y_true": [0], "score": [0.5], "pred": [0]}))
    table = grid.units("tiny")
    stored = grid.stored_units(study, table)
    assert stored.sum() == 1
    row = table[stored].iloc[0]
    assert (row["family"], row["maps"], row["repeat"], row["fold"]) == (
        cnn.family, "gm", key["repeat"], key["fold"])


def test_chapter_7_traced_fits_are_units_of_their_own(home):
    """The traced fits are planned under chapter 7's keys, never pooled with ours."""
    study = _study(home, "traced")
    traced = [m for m in grid.chapter_models("tiny") if m.spec.protocol == "traced"]
    assert [(m.notebook, m.maps, m.grid) for m in traced] == [("07_multimodal", ("gm",),
                                                                "after")]
    m = grid.resolve_family(traced[0], "sequential_2")
    keys = grid.unit_keys(study, m)
    assert keys == study.unit_keys(study.cnn("sequential_2", ("gm",), protocol="traced"))
    inner = study.unit_keys(study.cnn("sequential_2", ("gm",)))
    assert not {study.store.path_for(k) for k in keys} & {study.store.path_for(k)
                                                          for k in inner}


def test_one_task_per_record(home):
    """Two workers never write the same record: a unit asked for twice is one task."""
    study = _study(home, "tasks")
    cnn = next(m for m in grid.chapter_models("tiny") if m.kind == "cnn")
    tasks = grid.tasks_for(study, [cnn, cnn])
    p = get_profile("tiny")
    assert len(tasks) == p.n_folds * p.n_repeats
    assert len({t.hash for t in tasks}) == len(tasks)
    assert {t.hash for t in tasks} == {study.store.path_for(k).name
                                       for k in grid.unit_keys(study, cnn)}


def test_run_takes_workers_or_a_scheduler_not_both(capsys):
    with pytest.raises(SystemExit):
        main(["run", "--profile", "tiny", "--workers", "2", "--scheduler", "tcp://x:8786"])
    assert "not allowed with argument" in capsys.readouterr().err


def _subset() -> list:
    """The SVM models and one CNN family on grey matter: enough to cover both kinds."""
    models = grid.chapter_models("tiny")
    return ([m for m in models if m.kind == "svm"]
            + [m for m in models if m.kind == "cnn" and m.family == "sequential_2"
               and m.maps == ("gm",) and m.grid == "grid" and m.spec.recipe == "original"])


def _predictions(results: Path) -> dict:
    return {p.parent.name: p.read_bytes() for p in results.glob("**/predictions.tsv")
            if not any(part.startswith(".") for part in p.relative_to(results).parts)}


SERIAL = """
import json, sys
from mri3dcnn import grid
sys.path.insert(0, {tests!r})
from test_grid import _subset
models = _subset()
first = grid.run_grid("tiny", {cohort!r}, {results!r}, models=models[:-1])
again = grid.run_grid("tiny", {cohort!r}, {results!r}, models=models)
print(json.dumps([first["computed"], again["computed"]]))
"""


@pytest.fixture(scope="module")
def serial(home):
    """The subset run serially in two goes (the second as after a killed first), in a
    process with a worker's thread settings."""
    root, cohort = home
    results = root / "serial"
    code = SERIAL.format(tests=str(ROOT / "tests"), cohort=str(cohort), results=str(results))
    env = {**os.environ, **grid.worker_env(1), "MRI3DCNN_HOME": str(root)}
    out = subprocess.run([sys.executable, "-c", code], check=True, env=env,
                         capture_output=True, text=True).stdout
    first, again = json.loads(out.strip().splitlines()[-1])
    return results, first, again


@pytest.mark.slow
def test_a_restarted_run_computes_only_the_missing_units(serial):
    results, first, again = serial
    n = get_profile("tiny").n_folds * get_profile("tiny").n_repeats
    models = len(_subset())  # chapter 2's models, then one CNN
    assert first == (models - 1) * n
    assert again == n  # only the CNN units: the SVM ones were stored
    assert len(_predictions(results)) == models * n


@pytest.mark.slow
def test_dask_with_a_killed_worker_stores_what_a_serial_run_stores(home, serial):
    from distributed import Client

    root, cohort = home
    os.environ["MRI3DCNN_HOME"] = str(root)
    results = root / "dask"
    study = _study(home, "dask")
    cnn_keys = {f"unit-{t.hash}" for t in grid.tasks_for(study, _subset()[-1:])}
    cluster = grid.local_cluster(2, threads=1)
    client = Client(cluster)
    out = {}
    try:
        run = threading.Thread(target=lambda: out.update(grid.run_grid(
            "tiny", cohort, results, models=_subset(), client=client)))
        run.start()
        victim = None
        deadline = time.monotonic() + 300
        while victim is None and time.monotonic() < deadline:
            for address, keys in client.processing().items():
                if cnn_keys & set(keys):
                    victim = address
            time.sleep(0.2)
        assert victim is not None, "no CNN unit started"
        time.sleep(2)  # mid-fit
        pid = client.run(os.getpid, workers=[victim])[victim]
        os.kill(pid, signal.SIGKILL)
        run.join(600)
        assert not run.is_alive()
    finally:
        client.close()
        cluster.close()
    assert out["computed"] == len(_predictions(serial[0]))
    assert out["dashboard"].startswith("http")  # bokeh is pinned: the dashboard is served
    assert len({t["pid"] for t in out["tasks"]}) >= 2  # the units ran on several processes
    assert _predictions(results) == _predictions(serial[0])


def test_serial_is_the_default_and_starts_no_dask(home):
    root, cohort = home
    code = ("import sys; from mri3dcnn import grid; "
            f"out = grid.run_grid('tiny', {str(cohort)!r}, {str(root / 'none')!r}, models=[]); "
            "assert out['computed'] == 0 and out['dashboard'] is None; "
            "assert 'distributed' not in sys.modules, 'dask was imported'")
    env = {**os.environ, "MRI3DCNN_HOME": str(root)}
    subprocess.run([sys.executable, "-c", code], check=True, env=env)


def test_estimate_counts_each_sklearn_models_permutation_test():
    p = get_profile("tiny")
    table = grid.units(p)
    tp = {"cnn": {"sequential_2": {"overhead_s": 1.0, "train_per_s": 20.0,
                                   "infer_per_s": 60.0}}, "svm_s": 1.0}
    est = grid.estimate_seconds(p, table, tp)
    svm = table.kind == "svm"
    one_map = est[svm & (table.family == "svm_linear") & (table.maps == "gm")]
    assert (one_map == 1 + p.n_permutations).all()
    assert (est[svm & (table.family == "chance")] == 1.0).all()  # never permuted
