"""What mixed precision does to the study's answers, on the same folds, seeds and subjects.

    python benchmarks/precision.py [--profile tiny] [--family sequential_2]
                                   [--precisions mixed_bfloat16 mixed_float16]
                                   [--write benchmarks/README.md]

Cross-validates one CNN family on grey matter through the study, once in float32 and once
per mixed policy (`Profile.precision`). Each run has its own results store, so it resumes
and is never mixed with the others; the cohort and the split plan are shared. For each
mixed policy the table gives both CV accuracies, their paired difference with the
corrected repeated-CV t interval over (repeat, fold), the share of subjects whose predicted
class is the same, the largest and the mean absolute difference of their scores, and the
training seconds per fit. On a CPU without native half-precision arithmetic the mixed runs
are slower: what this measures is whether the answers change; their speed belongs to a GPU
(`device_check.sh --mixed-precision`).
"""

from __future__ import annotations

import argparse
import datetime
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
from run import write_readme

MARKERS = ("<!-- precision:start -->", "<!-- precision:end -->")


def cross_validate(profile, family: str) -> tuple[pd.DataFrame, float]:
    """The family's CV predictions on grey matter under `profile`, and its mean fit seconds."""
    from mri3dcnn.results import predictions_of
    from mri3dcnn.study import Study

    study = Study.open(profile)
    records = study.fit_cnn(family, ("gm",))
    fit_s = float(np.mean([r.info["timings"]["fit_s"] for r in records]))
    return predictions_of(records), fit_s


def compare(reference: pd.DataFrame, other: pd.DataFrame) -> dict:
    """Accuracy of both, their paired difference, and how far the subjects' answers moved."""
    from mri3dcnn.stats import cv_test, subject_level

    a, b = subject_level(reference, "cv"), subject_level(other, "cv")
    m = a.merge(b, on="participant_id", suffixes=("_ref", "_other"))
    diff = cv_test(other, reference, metric="accuracy")
    gap = (m["score_other"] - m["score_ref"]).abs()
    return {"acc_ref": float((m["pred_ref"] == m["y_true_ref"]).mean()),
            "acc_other": float((m["pred_other"] == m["y_true_ref"]).mean()),
            "difference": diff["difference"], "ci_low": diff["ci_low"],
            "ci_high": diff["ci_high"], "agree": float((m["pred_ref"] == m["pred_other"]).mean()),
            "max_gap": float(gap.max()), "mean_gap": float(gap.mean()), "n": len(m)}


def table(rows: list[dict]) -> list[str]:
    out = ["| precision | CV accuracy (float32) | CV accuracy (mixed) | difference [95 % CI] "
           "| same class | largest / mean score change | s per fit (float32 / mixed) |",
           "|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        out.append(f"| {r['precision']} | {r['acc_ref']:.3f} | {r['acc_other']:.3f} "
                   f"| {r['difference']:+.3f} [{r['ci_low']:+.3f}, {r['ci_high']:+.3f}] "
                   f"| {100 * r['agree']:.1f} % of {r['n']} | {r['max_gap']:.4f} / "
                   f"{r['mean_gap']:.4f} | {r['fit_ref']:.1f} / {r['fit_other']:.1f} |")
    return out


def main() -> None:
    from mri3dcnn.config import PRECISIONS, get_profile
    from mri3dcnn.hardware import describe

    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", default="tiny")
    ap.add_argument("--family", default="sequential_2")
    ap.add_argument("--precisions", nargs="*", choices=PRECISIONS[1:],
                    help="default: both on a GPU, mixed_bfloat16 on a CPU (no float16 "
                         "3D pooling there)")
    ap.add_argument("--write", type=Path, help="README to write the table into")
    a = ap.parse_args()
    if a.precisions is None:
        import tensorflow as tf

        gpu = bool(tf.config.list_physical_devices("GPU"))
        a.precisions = list(PRECISIONS[1:]) if gpu else ["mixed_bfloat16"]
    base = replace(get_profile(a.profile), precision="float32")
    reference, fit_ref = cross_validate(base, a.family)
    rows = []
    for precision in a.precisions:
        other, fit_other = cross_validate(replace(base, precision=precision), a.family)
        rows.append({"precision": precision, **compare(reference, other),
                     "fit_ref": fit_ref, "fit_other": fit_other})
        print(table(rows)[-1], flush=True)
    head = (f"Host: {describe()}. {a.family} on grey matter, profile `{a.profile}` "
            f"({base.n_subjects} subjects, {base.grid_mm:g} mm, {base.n_folds}-fold CV x "
            f"{base.n_repeats}, {base.epochs} epochs at most); difference = mixed minus "
            "float32, corrected repeated-CV t interval.")
    text = [head, "", *table(rows)]
    print("\n".join(text))
    if a.write:
        when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
        command = " ".join(["python benchmarks/precision.py", *sys.argv[1:]])
        write_readme(a.write, "\n".join([f"Measured {when} with `{command}`.", "", *text]),
                     MARKERS)
        print(f"table written to {a.write}")


if __name__ == "__main__":
    main()
