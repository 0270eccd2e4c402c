"""The split plan: subject-level stratified folds plus an independent test set.

Every model in the book reads the same plan, so their predictions are paired subject by
subject. The plan is a table with one row per (subject, repeat); `fold` is the CV fold in
that repeat, or -1 for the independent test set (a whole site when the cohort has several).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedKFold, train_test_split

INDEPENDENT = -1


class LeakageError(ValueError):
    """A subject would be seen in training and in testing."""


def make_split_plan(participants: pd.DataFrame, n_folds: int, n_repeats: int = 1,
                    seed: int = 0, test_site: str | None = "auto",
                    test_fraction: float = 0.25) -> pd.DataFrame:
    """Stratified (group x site) K-fold over the CV subjects, and a held-out test set.

    `test_site="auto"` holds out the last site when there are several, else a stratified
    `test_fraction` of subjects; `None` holds nothing out.
    """
    p = participants.reset_index(drop=True)[["participant_id", "group", "site"]].copy()
    sites = sorted(p["site"].unique())
    if test_site == "auto":
        test_site = sites[-1] if len(sites) > 1 else "__fraction__"
    if test_site is None:
        independent = np.zeros(len(p), bool)
    elif test_site == "__fraction__":
        _, test_idx = train_test_split(np.arange(len(p)), test_size=test_fraction,
                                       stratify=p["group"], random_state=seed)
        independent = np.isin(np.arange(len(p)), test_idx)
    else:
        if test_site not in sites:
            raise ValueError(f"test_site {test_site!r} is not one of the sites {sites}.")
        independent = (p["site"] == test_site).to_numpy()
    cv = p[~independent]
    strata = cv["group"] + "|" + cv["site"]
    if strata.value_counts().min() < n_folds:
        strata = cv["group"]  # too few per site: stratify by group only
    if strata.value_counts().min() < n_folds:
        raise ValueError(
            f"Cannot make {n_folds} folds: a group has only {strata.value_counts().min()} "
            "subjects outside the test set. Use fewer folds or a larger cohort."
        )
    rows = []
    for r in range(n_repeats):
        skf = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed + r)
        fold = np.empty(len(cv), int)
        for k, (_, test) in enumerate(skf.split(np.zeros(len(cv)), strata)):
            fold[test] = k
        rows.append(cv.assign(repeat=r, fold=fold, set="cv"))
        rows.append(p[independent].assign(repeat=r, fold=INDEPENDENT, set="independent"))
    plan = pd.concat(rows, ignore_index=True)
    check_split_plan(plan)
    return plan


def check_split_plan(plan: pd.DataFrame) -> None:
    """Raise LeakageError if any subject sits in two partitions of one repeat."""
    for r, part in plan.groupby("repeat"):
        dup = part["participant_id"][part["participant_id"].duplicated()]
        if len(dup):
            raise LeakageError(
                f"Split plan, repeat {r}: subject {dup.iloc[0]} is in more than one partition "
                f"({len(dup)} duplicates). Each subject must be in exactly one fold or the "
                "independent set; rebuild the plan with make_split_plan."
            )
    per_subject = plan.groupby("participant_id")["set"].nunique()
    both = per_subject[per_subject > 1]
    if len(both):
        raise LeakageError(
            f"Split plan: subject {both.index[0]} is in the independent test set in one "
            "repeat and in cross-validation in another; the test set must be fixed."
        )


def iter_folds(plan: pd.DataFrame, repeat: int = 0
               ) -> Iterator[tuple[int, list[str], list[str], list[str]]]:
    """(fold, training ids, held-out fold ids, independent-test ids) for one repeat."""
    part = plan[plan["repeat"] == repeat]
    if part.empty:
        raise ValueError(f"The split plan has no repeat {repeat}.")
    independent = part.loc[part["fold"] == INDEPENDENT, "participant_id"].tolist()
    cv = part[part["fold"] != INDEPENDENT]
    for k in sorted(cv["fold"].unique()):
        test = cv.loc[cv["fold"] == k, "participant_id"].tolist()
        train = cv.loc[cv["fold"] != k, "participant_id"].tolist()
        if set(train) & set(test) or (set(train) | set(test)) & set(independent):
            raise LeakageError(f"Fold {k} of repeat {repeat} shares subjects between partitions.")
        yield int(k), train, test, independent


def cv_subjects(plan: pd.DataFrame, repeat: int = 0) -> list[str]:
    """Every subject outside the independent test set."""
    part = plan[(plan["repeat"] == repeat) & (plan["fold"] != INDEPENDENT)]
    return part["participant_id"].tolist()


def save_split_plan(plan: pd.DataFrame, path: str | Path) -> Path:
    """Write the plan as TSV, atomically."""
    from .atomic import write_text

    path = Path(path)
    write_text(path, plan.to_csv(sep="\t", index=False))
    return path


def load_split_plan(path: str | Path) -> pd.DataFrame:
    plan = pd.read_csv(path, sep="\t", dtype={"participant_id": str})
    check_split_plan(plan)
    return plan
