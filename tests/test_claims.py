"""Each claim's verdict follows from fixtures built to support, contradict or leave it open."""

import numpy as np
import pandas as pd
import pytest

from mri3dcnn.claims import GENERALISATION_CLAIM, best_model, headline_claims, ranking
from mri3dcnn.stats import summarise

KINDS = {"cnn_gm": ("3d_cnn", "sequential_2", "gm"),
         "cnn_multi": ("3d_cnn", "sequential_2", "gm+fa"),
         "svm": ("02_svm", "svm_linear", "gm"),
         "2d": ("03_pretrained_2d", "2d_efficientnet_lite0", "gm")}


def model(kind, cv_signal, ind_signal, seed, n_cv=150, n_ind=150, folds=3):
    """One model's stored predictions: signal is the shift of its logit between groups."""
    chapter, name, maps = KINDS[kind]
    rng = np.random.default_rng(seed)
    y_cv, y_ind = np.arange(n_cv) % 2, np.arange(n_ind) % 2
    s_cv = 1 / (1 + np.exp(-cv_signal * (2 * y_cv - 1) - rng.normal(0, 1, n_cv)))
    rows = [pd.DataFrame({"participant_id": [f"c{i}" for i in range(n_cv)], "set": "cv",
                          "y_true": y_cv, "score": s_cv, "fold": np.arange(n_cv) % folds})]
    base = rng.normal(0, 1, n_ind)
    for f in range(folds):  # fold models agree up to a little noise
        s = 1 / (1 + np.exp(-ind_signal * (2 * y_ind - 1) - base - rng.normal(0, .1, n_ind)))
        rows.append(pd.DataFrame({"participant_id": [f"i{i}" for i in range(n_ind)],
                                  "set": "independent", "y_true": y_ind, "score": s,
                                  "fold": f}))
    out = pd.concat(rows, ignore_index=True)
    return out.assign(pred=(out["score"] >= 0.5).astype(int), chapter=chapter, model=name,
                      maps=maps, protocol="inner", repeat=0, seed=0, hash=kind)


def verdicts(**signals):
    preds = pd.concat([model(k, *v, seed=i) for i, (k, v) in enumerate(signals.items())])
    return headline_claims(summarise(preds, n_boot=50), preds).set_index("claim")["verdict"]


def test_claims_supported():
    v = verdicts(cnn_gm=(2.5, 1.0), cnn_multi=(3.0, 3.0), svm=(2.0, 0.2), **{"2d": (0.5, 0.3)})
    assert v.to_dict() == {"3D CNNs beat 2D ImageNet features": "supported",
                           "3D CNNs beat the SVM": "supported",
                           "Several maps beat one map": "supported",
                           GENERALISATION_CLAIM: "supported"}


def test_claims_contradicted():
    v = verdicts(cnn_gm=(3.0, 1.0), cnn_multi=(2.0, 0.0), svm=(2.5, 2.5), **{"2d": (2.0, 3.0)})
    assert v.to_dict() == {"3D CNNs beat 2D ImageNet features": "contradicted",
                           "3D CNNs beat the SVM": "contradicted",
                           "Several maps beat one map": "contradicted",
                           GENERALISATION_CLAIM: "contradicted"}


def test_claims_left_open():
    v = verdicts(cnn_gm=(1.5, 1.5), cnn_multi=(1.5, 1.5), svm=(1.5, 1.5), **{"2d": (1.5, 1.5)})
    assert set(v) == {"not supported"}


def test_claims_without_results_are_not_tested():
    v = verdicts(cnn_gm=(2.0, 2.0), svm=(1.0, 1.0))
    assert v["3D CNNs beat 2D ImageNet features"] == "not tested: no 2D pretrained results"
    assert v["Several maps beat one map"] == "not tested: no 3D CNN, several maps results"
    assert v["3D CNNs beat the SVM"] == "supported"


def test_best_model_is_chosen_on_cross_validation_only():
    preds = pd.concat([model("cnn_gm", 1.0, 3.0, 0), model("svm", 2.0, 0.0, 1)])
    summary = summarise(preds, n_boot=20)
    assert best_model(summary)["label"] == "svm_linear [gm]"
    assert ranking(summary)["label"].tolist() == ["svm_linear [gm]", "sequential_2 [gm]"]
    assert best_model(summary, set_name="independent")["label"] == "sequential_2 [gm]"
    assert best_model(summary.iloc[:0]) is None
    with pytest.raises(KeyError):
        best_model(summary, "no_such_metric")
