"""Study's chapter computations choose models on cross-validation only."""

import numpy as np
import pandas as pd

from mri3dcnn.crossval import CHAPTER_CNN
from mri3dcnn.study import DEFAULT_FAMILY, Study


def _predictions(family, cv_good: bool, independent_good: bool) -> pd.DataFrame:
    y = np.array([0, 1] * 10)
    rows = []
    for part, good in (("cv", cv_good), ("independent", independent_good)):
        score = np.where(y == 1, 0.9, 0.1) if good else np.where(y == 1, 0.1, 0.9)
        rows.append(pd.DataFrame({
            "participant_id": [f"{part}-{i}" for i in range(len(y))], "set": part,
            "y_true": y, "score": score, "pred": (score > 0.5).astype(int)}))
    p = pd.concat(rows, ignore_index=True)
    return p.assign(chapter=CHAPTER_CNN, model=family, family=family, maps="gm",
                    fusion="none", protocol="inner", variant="none", fold=0, repeat=0,
                    seed=0)


def test_best_family_is_chosen_on_cross_validation(monkeypatch):
    study = object.__new__(Study)
    preds = pd.concat([_predictions("good_cv", True, False),
                       _predictions("good_independent", False, True)], ignore_index=True)
    monkeypatch.setattr(Study, "predictions", lambda self, chapter=None: preds)
    family, ranking = study.best_cnn_family()
    assert family == "good_cv"
    assert ranking["model"].tolist() == ["good_cv", "good_independent"]  # cv rows only
    assert study.best_cnn_family("given")[0] == "given"
    monkeypatch.setattr(Study, "predictions", lambda self, chapter=None: preds.iloc[:0])
    assert study.best_cnn_family()[0] == DEFAULT_FAMILY
