"""What the published protocol adds, taken apart on traced runs with known epochs."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from mri3dcnn.crossval import ModelSpec, Unit, cross_validate, unit_keys
from mri3dcnn.plots import protocol_comparison
from mri3dcnn.results import ResultsStore, predictions_of, traces_of
from mri3dcnn.splits import make_split_plan
from mri3dcnn.stats import epoch_curves, selection_by_fold, selection_inflation

#: per (repeat, fold): held-out accuracy after epochs 1-3, validation loss after each, and
#: the published arm's accuracy. Four held-out subjects per fold, eight per repeat.
RUNS = {
    (0, 0): ([0.50, 0.75, 1.00], [0.9, 0.5, 0.7], 1.00),  # val epoch 2, test epoch 3
    (0, 1): ([0.75, 0.50, 0.50], [0.8, 0.6, 0.4], 0.50),  # val 3, test 1
    (1, 0): ([0.25, 0.75, 0.50], [0.3, 0.6, 0.9], 0.75),  # val 1, test 2
    (1, 1): ([0.50, 0.50, 1.00], [0.5, 0.5, 0.6], 1.00),  # val 1 (a tie: the first), test 3
}
EPOCHS = {(0, 0): (2, 3), (0, 1): (3, 1), (1, 0): (1, 2), (1, 1): (1, 3)}
Y = [1, 1, 0, 0]


def _held_out(f, accuracy):
    """Four subjects, the first `4 * accuracy` of them right."""
    right = np.arange(4) < round(4 * accuracy)
    pred = np.where(right, Y, 1 - np.array(Y))
    return pd.DataFrame({"participant_id": [f"s{4 * f + i}" for i in range(4)],
                         "y_true": Y, "score": np.where(pred == 1, 0.9, 0.1), "pred": pred})


def fixture():
    trace, published = [], []
    for (r, f), (acc, loss, pub) in RUNS.items():
        for e, (a, v) in enumerate(zip(acc, loss, strict=True), start=1):
            trace.append(_held_out(f, a).assign(repeat=r, fold=f, epoch=e, val_loss=v,
                                                   val_accuracy=0.5, hash=f"run{r}{f}"))
        published.append(_held_out(f, pub).assign(set="cv", repeat=r, fold=f,
                                                     hash=f"pub{r}{f}"))
    return pd.concat(trace, ignore_index=True), pd.concat(published, ignore_index=True)


def test_each_epoch_is_chosen_within_its_own_run():
    """Pooling the runs of a fold over repeats (or reading one run's epoch for another)
    would choose epoch 2 for fold 0 and epoch 3 for fold 1 in both repeats."""
    by_fold = selection_by_fold(*fixture())
    got = {(r.repeat, r.fold): (r.epoch_val, r.epoch_test) for r in by_fold.itertuples()}
    assert got == EPOCHS
    for r in by_fold.itertuples():
        acc, _, pub = RUNS[(r.repeat, r.fold)]
        assert (r.val_chosen, r.test_chosen, r.published) == (
            acc[r.epoch_val - 1], max(acc), pub)
    assert (by_fold.n_test == 4).all() and (by_fold.n_train == 4).all()


def test_a_second_run_of_one_fold_is_refused():
    trace, published = fixture()
    other = trace[(trace.repeat == 0) & (trace.fold == 0)].assign(hash="another seed")
    with pytest.raises(ValueError, match="one run per repeat and fold"):
        selection_by_fold(pd.concat([trace, other]), published)
    with pytest.raises(ValueError, match="published fit"):
        selection_by_fold(trace, published[published.participant_id != "s0"])


def test_the_three_differences_and_their_intervals_by_hand():
    out = selection_inflation(selection_by_fold(*fixture())).set_index("comparison")
    # per (repeat, fold) (0,0) (0,1) (1,0) (1,1):
    # test-chosen - val-chosen  .25  .25  .50  .50 : mean 3/8,  variance 1/48
    # published - test-chosen    0  -.25   0    0  : mean -1/16, variance 1/64
    # published - val-chosen    .25   0   .50  .50 : mean 5/16, variance 11/192
    # corrected variance of the mean: (1/J + n_test/n_train) s^2 = (1/4 + 4/4) s^2
    half = sps.t.ppf(0.975, 3)
    expected = {"selection on the test fold": (3 / 8, 1 / 48),
                "100 % vs 80 % of training subjects": (-1 / 16, 1 / 64),
                "total: published minus honest": (5 / 16, 11 / 192)}
    assert list(out.index) == list(expected)
    for name, (mean, var) in expected.items():
        se = np.sqrt(1.25 * var)
        row = out.loc[name]
        assert row.difference == pytest.approx(mean)
        assert (row.ci_low, row.ci_high) == pytest.approx((mean - half * se, mean + half * se))
        assert row.p_value == pytest.approx(2 * sps.t.sf(abs(mean) / se, 3))
        assert row.units == 4
    assert out.loc["selection on the test fold", "difference"] + out.loc[
        "100 % vs 80 % of training subjects", "difference"] == pytest.approx(
        out.loc["total: published minus honest", "difference"])
    assert out.test.eq("corrected repeated-CV t (2 folds x 2 repeats), paired accuracy "
                       "difference per (repeat, fold)").all()


def test_the_figure_draws_each_run_with_its_own_chosen_epochs():
    trace, published = fixture()
    by_fold = selection_by_fold(trace, published)
    fig = protocol_comparison(epoch_curves(trace), by_fold, selection_inflation(by_fold))
    assert len(fig.axes) == 3  # one panel per fold, then the differences
    for f, ax in enumerate(fig.axes[:2]):
        curves = [line for line in ax.lines if len(line.get_xdata()) == 3]
        assert len(curves) == 2  # one per repeat
        stars = {(float(line.get_xdata()[0]), float(line.get_ydata()[0]))
                 for line in ax.lines if line.get_marker() == "*"}
        assert stars == {(EPOCHS[(r, f)][1], max(RUNS[(r, f)][0])) for r in (0, 1)}
    labels = {t.get_position()[1]: t.get_text() for t in fig.axes[2].get_yticklabels()}
    assert labels == {2: "selection on the test fold", 1: "100 % vs 80 % of training subjects",
                      0: "total: published minus honest"}


class Traced:
    """An estimator that stores a trace as a traced CNN fit does: two epochs, the second
    with the lower validation loss."""

    def describe(self):
        return {"traced": True}

    def fit_predict(self, unit: Unit):
        ids = sorted(unit.test)
        trace = pd.concat([pd.DataFrame({"participant_id": ids, "y_true": 0,
                                         "score": s, "pred": int(s > 0.5), "epoch": e})
                           for e, s in ((1, 0.7), (2, 0.2))])
        history = pd.DataFrame({"epoch": [1, 2], "val_loss": [0.9, 0.4],
                                "val_accuracy": [0.4, 0.6]})
        preds = trace[trace.epoch == 2].drop(columns="epoch").assign(set="cv")
        return {"predictions": preds, "history": history, "trace": trace,
                "info": {"best_epoch": 2}}


def test_traces_are_stored_with_their_record_under_their_own_key(tmp_path):
    participants = pd.DataFrame({"participant_id": [f"sub-{i:02d}" for i in range(12)],
                                 "group": ["patient", "control"] * 6, "site": "a"})
    plan = make_split_plan(participants, n_folds=2, n_repeats=2, seed=0)
    store = ResultsStore(tmp_path)
    spec = ModelSpec("t", "f", ("gm",), protocol="traced")
    recs = cross_validate(store, spec, Traced(), plan, {"cohort": "x"})
    inner = unit_keys(ModelSpec("t", "f", ("gm",)), Traced(), plan, {"cohort": "x"})
    assert not {store.path_for(k) for k in inner} & {r.path for r in recs}
    trace = traces_of(store.records("t"))
    n_cv = int((plan[plan.repeat == 0].fold >= 0).sum())
    assert len(trace) == 2 * 2 * n_cv  # repeats x epochs x held-out subjects
    assert trace.groupby(["repeat", "fold"]).hash.nunique().eq(1).all()
    assert (trace.set_index("epoch").val_loss.groupby("epoch").first() == [0.9, 0.4]).all()
    by_fold = selection_by_fold(trace, predictions_of(recs))
    assert (by_fold.epoch_val == 2).all() and (by_fold.epoch_test == 2).all()
    assert (by_fold.val_chosen == by_fold.published).all()
    with pytest.raises(ValueError, match="no trace"):
        traces_of([store.put({**recs[0].key, "chapter": "u"}, recs[0].predictions,
                             recs[0].history)])
