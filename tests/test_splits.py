"""Split plans: stratified, subject-level, and never leaking."""

import pandas as pd
import pytest

from mri3dcnn.splits import (
    INDEPENDENT,
    LeakageError,
    check_split_plan,
    iter_folds,
    load_split_plan,
    make_split_plan,
    save_split_plan,
)


def _participants(n=60, sites=3):
    return pd.DataFrame({
        "participant_id": [f"sub-{i:03d}" for i in range(n)],
        "group": ["patient", "control"] * (n // 2),
        "site": [f"site{i % sites}" for i in range(n)],
    })


def test_independent_site_and_folds():
    p = _participants()
    plan = make_split_plan(p, n_folds=4, n_repeats=2, seed=1)
    indep = plan[plan.fold == INDEPENDENT]
    assert set(indep.site) == {"site2"}
    for r in (0, 1):
        folds = list(iter_folds(plan, r))
        assert len(folds) == 4
        seen = []
        for _, train, test, ind in folds:
            assert not set(train) & set(test)
            assert not (set(train) | set(test)) & set(ind)
            seen += test
        assert sorted(seen) == sorted(p[p.site != "site2"].participant_id)
    # stratified: each fold holds both groups in equal measure
    cv = plan[(plan.repeat == 0) & (plan.fold >= 0)]
    counts = cv.groupby("fold").group.value_counts().unstack()
    assert (counts.max() - counts.min()).max() <= 1


def test_single_site_holds_out_a_fraction():
    plan = make_split_plan(_participants(40, 1), n_folds=3, seed=0)
    indep = plan[plan.fold == INDEPENDENT]
    assert len(indep) == 10 and indep.group.value_counts().min() == 5


def test_subject_in_two_partitions_is_refused():
    plan = make_split_plan(_participants(), n_folds=3)
    bad = pd.concat([plan, plan.iloc[[0]].assign(fold=(plan.fold.iloc[0] + 1) % 3)])
    with pytest.raises(LeakageError, match=plan.participant_id.iloc[0]):
        check_split_plan(bad)


def test_too_many_folds():
    with pytest.raises(ValueError, match="Cannot make 10 folds"):
        make_split_plan(_participants(12, 1), n_folds=10)


def test_roundtrip(tmp_path):
    plan = make_split_plan(_participants(), n_folds=3)
    path = save_split_plan(plan, tmp_path / "plan.tsv")
    pd.testing.assert_frame_equal(load_split_plan(path), plan)
