"""SVM baselines on handcrafted features, with nested cross-validation.

Every fitted step (scaling, the choice of C, the classifier) lives in one scikit-learn
Pipeline fitted on training subjects only; C is chosen by an inner CV inside each outer
training set, so the held-out fold never influences the model that predicts it.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.dummy import DummyClassifier
from sklearn.feature_selection import SelectPercentile, f_classif
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from .crossval import Unit


def linear_svm(C_grid=(1e-4, 1e-3, 1e-2, 1e-1), inner_folds: int = 3, seed: int = 0,
               kernel: str = "linear", screening_percentile: float | None = None
               ) -> BaseEstimator:
    """Standardise, optionally keep the top ANOVA features, then an SVM with C chosen by
    inner stratified CV (nested CV). The RBF variant searches C over a wider range."""
    steps = [("scale", StandardScaler())]
    if screening_percentile:
        steps.append(("screen", SelectPercentile(f_classif, percentile=screening_percentile)))
    steps.append(("svm", SVC(kernel=kernel)))
    grid = {"svm__C": list(C_grid)}
    if kernel == "rbf":
        grid = {"svm__C": [c * 1e4 for c in C_grid], "svm__gamma": ["scale"]}
    return GridSearchCV(Pipeline(steps), grid, scoring="balanced_accuracy",
                        cv=StratifiedKFold(inner_folds, shuffle=True, random_state=seed))


class DecoderOnArrays(ClassifierMixin, BaseEstimator):
    """nilearn's Decoder (ANOVA screening + SVC with its own inner CV) behind the
    scikit-learn contract, taking masked-voxel rows so it runs on our folds."""

    def __init__(self, mask: np.ndarray | None = None, grid_mm: float = 6.0,
                 screening_percentile: float = 20, seed: int = 0):
        self.mask = mask
        self.grid_mm = grid_mm
        self.screening_percentile = screening_percentile
        self.seed = seed

    def _images(self, X):
        from nilearn.masking import unmask

        return unmask(np.asarray(X, np.float32), self._mask_image())

    def _mask_image(self):
        from .volumes import to_image

        return to_image(self.mask.astype(np.float32), self.grid_mm)

    def fit(self, X, y):
        from nilearn.decoding import Decoder

        self.decoder_ = Decoder(estimator="svc", mask=self._mask_image(),
                                cv=StratifiedKFold(3, shuffle=True, random_state=self.seed),
                                screening_percentile=self.screening_percentile,
                                scoring="balanced_accuracy", standardize="zscore_sample")
        with warnings.catch_warnings():  # voxels at the mask's edge can be constant in a fold
            warnings.filterwarnings("ignore", message="Features .* are constant")
            warnings.filterwarnings("ignore", message="invalid value encountered in divide")
            self.decoder_.fit(self._images(X), np.asarray(y))
        self.classes_ = np.unique(y)
        return self

    def decision_function(self, X):
        return np.asarray(self.decoder_.decision_function(self._images(X))).ravel()

    def predict(self, X):
        return np.asarray(self.decoder_.predict(self._images(X))).astype(int)


def chance() -> BaseEstimator:
    """The chance line: predicts from class frequencies alone."""
    return DummyClassifier(strategy="prior")


def _score(est: BaseEstimator, X: np.ndarray) -> np.ndarray:
    if hasattr(est, "decision_function"):
        try:
            return np.asarray(est.decision_function(X), float)
        except AttributeError:
            pass
    return np.asarray(est.predict_proba(X)[:, 1], float)


def fit_predict_sklearn(estimator: BaseEstimator, X: np.ndarray, y: np.ndarray, ids: list[str],
                        train_ids: list[str], test_ids: list[str],
                        independent_ids: list[str]) -> dict:
    """Fit a fresh clone on training subjects; score the held-out fold and independent set."""
    pos = {s: i for i, s in enumerate(ids)}
    train = np.array([pos[s] for s in train_ids])
    est = clone(estimator).fit(X[train], y[train])
    rows = []
    for part, sub in (("cv", test_ids), ("independent", independent_ids)):
        if not sub:
            continue
        idx = np.array([pos[s] for s in sub])
        score, pred = _score(est, X[idx]), est.predict(X[idx])
        rows += [{"participant_id": ids[i], "set": part, "y_true": int(y[i]),
                  "score": float(s), "pred": int(p)}
                 for i, s, p in zip(idx, score, pred, strict=True)]
    info = {}
    if hasattr(est, "best_params_"):
        info["best_params"] = est.best_params_
    return {"predictions": pd.DataFrame(rows), "info": info, "estimator": est}


@dataclass
class SklearnFit:
    """A scikit-learn estimator on a feature matrix, as an estimator for
    `crossval.cross_validate`: a fresh one from `make` is fitted per unit."""

    make: Callable[[], BaseEstimator]
    X: np.ndarray = field(repr=False)
    y: np.ndarray = field(repr=False)
    ids: list[str] = field(repr=False)

    def describe(self) -> dict:
        return {"estimator": repr(self.make())}

    def fit_predict(self, unit: Unit) -> dict:
        out = fit_predict_sklearn(self.make(), self.X, self.y, self.ids, unit.train,
                                  unit.test, unit.independent)
        out.pop("estimator")
        return out


def weight_map(estimator: BaseEstimator, X: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Fit on the given (training) subjects and return the linear SVM's weights in feature
    space, mapped back through the scaler and screening (zeros where screened out)."""
    est = clone(estimator).fit(X, y)
    pipe = est.best_estimator_ if hasattr(est, "best_estimator_") else est
    coef = np.asarray(pipe.named_steps["svm"].coef_).ravel()
    if "screen" in pipe.named_steps:
        full = np.zeros(X.shape[1])
        full[pipe.named_steps["screen"].get_support()] = coef
        coef = full
    return coef / pipe.named_steps["scale"].scale_
