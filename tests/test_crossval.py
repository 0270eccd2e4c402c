"""The one cross-validation runner: any estimator-like object, one record per unit."""

import pandas as pd
import pytest

from mri3dcnn.crossval import (
    CHAPTER_CNN,
    CHAPTERS,
    LateFusion,
    ModelSpec,
    Unit,
    cross_validate,
    display_name,
    unit_keys,
)
from mri3dcnn.results import ResultsStore
from mri3dcnn.splits import make_split_plan


def _plan(n=24, folds=3, repeats=2):
    participants = pd.DataFrame({
        "participant_id": [f"sub-{i:02d}" for i in range(n)],
        "group": ["patient", "control"] * (n // 2),
        "site": ["a"] * (n - 6) + ["b"] * 6,
    })
    return make_split_plan(participants, n_folds=folds, n_repeats=repeats, seed=0)


class Constant:
    """The smallest estimator: predicts 0.5 for everyone, counting its fits."""

    def __init__(self):
        self.calls = []

    def describe(self):
        return {"constant": 0.5}

    def fit_predict(self, unit: Unit):
        self.calls.append((unit.repeat, unit.fold))
        assert not set(unit.train) & (set(unit.test) | set(unit.independent))
        rows = [{"participant_id": s, "set": part, "y_true": 0, "score": 0.5, "pred": 0}
                for part, ids in (("cv", unit.test), ("independent", unit.independent))
                for s in ids]
        return {"predictions": pd.DataFrame(rows)}


def test_units_are_listed_without_running_and_run_once(tmp_path):
    plan, est = _plan(), Constant()
    spec = ModelSpec("t", "constant", ("gm",))
    keys = unit_keys(spec, est, plan, {"cohort": "x"})
    assert len(keys) == 6 and est.calls == []  # 3 folds x 2 repeats, nothing fitted
    assert {(k["repeat"], k["fold"]) for k in keys} == {(r, f) for r in (0, 1)
                                                        for f in (0, 1, 2)}
    assert all(k["family"] == "constant" and k["variant"] == "none" for k in keys)
    store = ResultsStore(tmp_path)
    recs = cross_validate(store, spec, est, plan, {"cohort": "x"})
    assert len(recs) == 6 and len(est.calls) == 6
    cross_validate(store, spec, est, plan, {"cohort": "x"})
    assert len(est.calls) == 6  # every unit read back, none refitted
    assert sorted(store.get(k).path for k in keys) == sorted(r.path for r in recs)
    only = cross_validate(store, spec, est, plan, {"cohort": "x"}, folds=[1])
    assert [r.key["fold"] for r in only] == [1, 1]


def test_key_fields_are_explicit_and_names_are_built_not_parsed():
    assert display_name({"family": "seq", "fusion": "late", "variant": "none"}) == "seq-late"
    assert display_name({"family": "seq", "fusion": "branch", "variant": "none"}) == "seq"
    assert display_name({"family": "seq", "fusion": "none",
                         "variant": "published-wiring"}) == "seq-published-wiring"
    with pytest.raises(ValueError, match="variant"):
        ModelSpec("t", "seq", ("gm",), variant="shuffled")
    with pytest.raises(ValueError, match="fusion"):
        ModelSpec("t", "seq", ("gm", "fa"), fusion="early")
    with pytest.raises(ValueError, match="at least one map"):
        ModelSpec("t", "seq", ())
    assert CHAPTER_CNN in CHAPTERS and len(set(CHAPTERS)) == len(CHAPTERS)


def test_late_fusion_averages_stored_records_fold_by_fold(tmp_path):
    plan = _plan(repeats=1)
    store = ResultsStore(tmp_path)

    class Fixed(Constant):
        def __init__(self, score):
            super().__init__()
            self.score = score

        def describe(self):
            return {"score": self.score}

        def fit_predict(self, unit):
            out = super().fit_predict(unit)
            out["predictions"]["score"] = self.score
            return out

    single = {m: cross_validate(store, ModelSpec(CHAPTER_CNN, "f", (m,)), Fixed(s), plan,
                                {"cohort": "x"})
              for m, s in (("gm", 0.2), ("fa", 0.9))}
    late = cross_validate(store, ModelSpec(CHAPTER_CNN, "f", ("fa", "gm"), fusion="late"),
                          LateFusion(single), plan, {"cohort": "x"})
    p = store.predictions(CHAPTER_CNN)
    fused = p[p.fusion == "late"]
    assert len(late) == 3 and fused["score"].round(6).eq(0.55).all()
    assert (fused["pred"] == 1).all() and fused["model"].eq("f-late").all()
    with pytest.raises(ValueError, match="lacks a model"):
        LateFusion({"gm": single["gm"][:1], "fa": single["fa"]}).fit_predict(
            Unit(key={"repeat": 0, "fold": 2}, train=[], test=[]))
