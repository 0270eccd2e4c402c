"""The benchmark scripts' contracts that need no timing: the GPU check fails clearly without
a GPU, the GPU install is opt-in, and the README table is replaced between its markers."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))


def _device_check(tmp_path, nvidia_smi: str, *args: str):
    env = {**os.environ, "NVIDIA_SMI": nvidia_smi, "PYTHON": sys.executable}
    return subprocess.run(["bash", str(ROOT / "benchmarks" / "device_check.sh"), *args],
                          env=env, capture_output=True, text=True, cwd=tmp_path)


def test_device_check_without_a_driver_says_so(tmp_path):
    out = _device_check(tmp_path, str(tmp_path / "no-such-nvidia-smi"))
    assert out.returncode == 3
    assert "no NVIDIA GPU driver" in out.stderr and "make env DEVICE=gpu" in out.stderr


def test_device_check_with_a_driver_but_no_gpu_says_so(tmp_path):
    fake = tmp_path / "nvidia-smi"
    fake.write_text("#!/bin/sh\necho 'No devices were found' >&2\nexit 6\n")
    fake.chmod(0o755)
    out = _device_check(tmp_path, str(fake))
    assert out.returncode == 3 and "no usable GPU: No devices were found" in out.stderr


def test_device_benchmark_on_a_cpu_build_says_so():
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "device.py"),
                          "--models", "sequential_1"], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    assert out.returncode == 3
    assert "TensorFlow sees no GPU" in out.stderr and "make env DEVICE=gpu" in out.stderr


def _make_env(tmp_path, *args: str) -> str:
    out = subprocess.run(["make", "-n", "env", f"VENV={tmp_path.name}/venv", *args],
                         cwd=ROOT, capture_output=True, text=True, check=True)
    return out.stdout


def test_the_gpu_build_is_opt_in(tmp_path):
    pinned = next(line.split("==")[1] for line in (ROOT / "requirements.txt").read_text().split()
                  if line.replace("_", "-").startswith("tensorflow-cpu=="))
    assert "and-cuda" not in _make_env(tmp_path)
    gpu = _make_env(tmp_path, "DEVICE=gpu")
    assert f"tensorflow[and-cuda]=={pinned}" in gpu
    assert "install --quiet -r requirements.txt" not in gpu


def test_readme_table_is_replaced_between_markers(tmp_path):
    from run import MARKERS, write_readme

    readme = tmp_path / "README.md"
    readme.write_text(f"# B\n\nprose\n\n{MARKERS[0]}\nold\n{MARKERS[1]}\n\nafter\n")
    write_readme(readme, "| new |")
    assert readme.read_text() == f"# B\n\nprose\n\n{MARKERS[0]}\n| new |\n{MARKERS[1]}\n\nafter\n"
    readme.write_text("no markers")
    with pytest.raises(ValueError, match="lacks the markers"):
        write_readme(readme, "x")


@pytest.mark.slow
def test_device_benchmark_dry_run_prints_a_row_per_family_then_runs_one_fold(tmp_path):
    import shutil

    shutil.copy(ROOT / "data_manifest.yaml", tmp_path)
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "device.py"), "--dry-run",
                          "--grid-mm", "8", "--models", "sequential_2", "sfcn", "--batch", "2",
                          "--batches", "1", "--mixed-precision", "bfloat16", "--fold", "tiny"],
                         capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT / "src"),
                              "MRI3DCNN_HOME": str(tmp_path)})
    rows = [ln for ln in out.stdout.splitlines() if ln.startswith("| s")]
    assert [r.split("|")[1].strip() for r in rows] == ["sequential_2", "sfcn"]
    assert "policy mixed_bfloat16" in out.stdout
    assert "one fold of 'tiny' (24 subjects, 8 mm" in out.stdout
    folds = [ln for ln in out.stdout.splitlines() if "fold accuracy" in ln]
    assert [ln.split(":")[0].strip() for ln in folds] == ["sequential_2", "sfcn"]
    assert len(list((tmp_path / "results" / "tiny").glob("**/predictions.tsv"))) == 2


def test_layer_times_cover_every_layer_and_count_the_first_convolution_apart():
    """On a 6 mm Sequential_2, every layer but the input is timed, the convolution that
    reads the input is its own kind without an input gradient, and the summary's shares of
    layer time add up to 100 %."""
    import keras
    from layers import layer_times, summary

    from mri3dcnn.config import study_grid
    from mri3dcnn.models import build
    from mri3dcnn.models.flops import model_flops

    _, grid = study_grid(6.0)
    model = build("sequential_2", ["gm"], grid, compile=False)
    rows = layer_times(model, batch=2, repeats=1)
    assert [r["layer"] for r in rows] == [x.name for x in model.layers[1:]]
    assert rows[0]["kind"] == "Conv3D on the model input"
    assert sum(r["train_flops"] for r in rows) == pytest.approx(2 * model_flops(model)["train"])
    assert all(r["train_s"] > 0 for r in rows)
    table = summary("sequential_2", rows, step_s=sum(r["train_s"] for r in rows), peak=1e11)
    shares = [float(line.split("|")[2].strip(" %")) for line in table[4:]]
    assert sum(shares) == pytest.approx(100, abs=len(shares))  # each rounded to 1 %
    assert "(no time measurable outside the layers)" in table[0]
    slower = summary("sequential_2", rows, step_s=2 * sum(r["train_s"] for r in rows), peak=1e11)
    assert "(50 % of it outside the layers" in slower[0]
    keras.backend.clear_session()


def test_precision_comparison_pairs_subjects_and_counts_changed_answers():
    """Two runs on the same 3 folds: the mixed one flips one subject's class and moves its
    score by 0.2; the comparison sees both accuracies, the agreement and the score gaps."""
    from precision import compare, table

    rng = np.random.default_rng(0)
    ids = [f"sub-{i:02d}" for i in range(12)]
    y = np.array([0, 1] * 6)
    score = np.clip(0.5 + 0.3 * (2 * y - 1) + rng.normal(0, 0.05, 12), 0, 1)
    ref = pd.DataFrame({"participant_id": ids, "y_true": y, "score": score,
                        "pred": (score > 0.5).astype(int), "set": "cv", "repeat": 0,
                        "fold": np.arange(12) % 3, "seed": 0})
    other = ref.copy()
    other.loc[0, "score"] = ref.loc[0, "score"] + 0.4 if y[0] == 0 else ref.loc[0, "score"]
    other.loc[0, "pred"] = int(other.loc[0, "score"] > 0.5)
    r = compare(ref, other)
    assert r["n"] == 12 and r["acc_ref"] == 1.0 and r["acc_other"] == pytest.approx(11 / 12)
    assert r["agree"] == pytest.approx(11 / 12)
    assert r["max_gap"] == pytest.approx(0.4) and r["mean_gap"] == pytest.approx(0.4 / 12)
    assert r["ci_low"] <= r["difference"] <= r["ci_high"] < 1
    row = table([{**r, "precision": "mixed_bfloat16", "fit_ref": 1.0, "fit_other": 2.0}])[-1]
    assert row.startswith("| mixed_bfloat16 | 1.000 | 0.917 |") and "91.7 % of 12" in row
