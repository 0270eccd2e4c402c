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
from sklearn.base import BaseEstimator, ClassifierMixin, TransformerMixin, clone
from sklearn.dummy import DummyClassifier
from sklearn.feature_selection import SelectPercentile, f_classif
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from .config import Profile
from .crossval import Unit


class LinearKernelSVC(ClassifierMixin, BaseEstimator):
    """A binary linear SVM solved by libsvm on a precomputed Gram matrix.

    libsvm evaluates a linear kernel with one scalar dot product per pair of subjects and
    per iteration; on thousands of voxels, one BLAS product `X @ X.T` before the solver is
    about a hundred times cheaper and gives the same solution (the same dual problem).
    `coef_` and `intercept_` are those of `SVC(kernel="linear")`, so weight maps and
    decision values are unchanged, and the label-permutation tests become affordable.
    """

    def __init__(self, C: float = 1.0):
        self.C = C

    def fit(self, X, y):
        X = np.asarray(X, float)
        svc = SVC(kernel="precomputed", C=self.C).fit(X @ X.T, y)
        if len(svc.classes_) != 2:
            raise ValueError(f"LinearKernelSVC is binary; y has {len(svc.classes_)} classes.")
        self.classes_ = svc.classes_
        self.support_ = svc.support_
        self.dual_coef_ = svc.dual_coef_
        self.intercept_ = svc.intercept_
        self.coef_ = svc.dual_coef_ @ X[svc.support_]
        return self

    def decision_function(self, X) -> np.ndarray:
        return np.asarray(X, float) @ self.coef_[0] + self.intercept_[0]

    def predict(self, X) -> np.ndarray:
        return self.classes_[(self.decision_function(X) > 0).astype(int)]


class RBFKernelSVC(ClassifierMixin, BaseEstimator):
    """A binary RBF SVM solved by libsvm on a kernel matrix built from one BLAS product
    (squared distances as |x|^2 + |y|^2 - 2 x.y): `SVC(kernel="rbf")`'s solution, at a
    fraction of its cost on thousands of voxels. `gamma="scale"` is scikit-learn's
    1 / (n_features * X.var()) of the training set."""

    def __init__(self, C: float = 1.0, gamma: float | str = "scale"):
        self.C = C
        self.gamma = gamma

    def _kernel(self, A: np.ndarray, B: np.ndarray) -> np.ndarray:
        d = (A * A).sum(1)[:, None] + (B * B).sum(1)[None, :] - 2.0 * (A @ B.T)
        return np.exp(-self.gamma_ * np.maximum(d, 0.0))

    def fit(self, X, y):
        X = np.asarray(X, float)
        self.gamma_ = (1.0 / (X.shape[1] * X.var()) if self.gamma == "scale"
                       else float(self.gamma))
        svc = SVC(kernel="precomputed", C=self.C).fit(self._kernel(X, X), y)
        if len(svc.classes_) != 2:
            raise ValueError(f"RBFKernelSVC is binary; y has {len(svc.classes_)} classes.")
        self.classes_ = svc.classes_
        self.support_vectors_ = X[svc.support_]
        self.dual_coef_ = svc.dual_coef_
        self.intercept_ = svc.intercept_
        return self

    def decision_function(self, X) -> np.ndarray:
        K = self._kernel(np.asarray(X, float), self.support_vectors_)
        return K @ self.dual_coef_[0] + self.intercept_[0]

    def predict(self, X) -> np.ndarray:
        return self.classes_[(self.decision_function(X) > 0).astype(int)]


def linear_svm(C_grid=Profile.svm_C, inner_folds: int = 3, seed: int = 0,
               kernel: str = "linear", screening_percentile: float | None = None
               ) -> BaseEstimator:
    """Standardise, optionally keep the top ANOVA features, then an SVM with C chosen by
    inner stratified CV (nested CV). The RBF variant searches C over a wider range; both
    are solved on a kernel matrix from one BLAS product (`LinearKernelSVC`,
    `RBFKernelSVC`)."""
    steps = [("scale", StandardScaler())]
    if screening_percentile:
        steps.append(("screen", SelectPercentile(f_classif, percentile=screening_percentile)))
    solvers = {"linear": LinearKernelSVC, "rbf": RBFKernelSVC}
    steps.append(("svm", solvers[kernel]() if kernel in solvers else SVC(kernel=kernel)))
    grid = {"svm__C": list(C_grid)}
    if kernel == "rbf":
        grid = {"svm__C": [c * 1e4 for c in C_grid], "svm__gamma": ["scale"]}
    return GridSearchCV(Pipeline(steps), grid, scoring="balanced_accuracy",
                        cv=StratifiedKFold(inner_folds, shuffle=True, random_state=seed))


def grid_edge(search: BaseEstimator) -> dict[str, object]:
    """The searched parameters whose chosen value is the smallest or largest of a numeric
    grid: there the search may have wanted a value outside the grid."""
    if not hasattr(search, "best_params_"):
        return {}
    grids = search.param_grid if isinstance(search.param_grid, list) else [search.param_grid]
    out = {}
    for name, value in search.best_params_.items():
        values = [v for g in grids for v in g.get(name, []) if isinstance(v, int | float)]
        if len(values) > 1 and isinstance(value, int | float) and value in (min(values),
                                                                           max(values)):
            out[name] = value
    return out


#: C values of the SVM on a handful of whole-brain measures: a few well-measured features
#: want far weaker regularisation than thousands of voxels
GLOBAL_C = (1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0, 1000.0)


class CovariateAdjuster(TransformerMixin, BaseEstimator):
    """Regress the features on covariates and keep the residuals, with the regression
    fitted on training subjects only (the adjustment of a case-control analysis, inside
    the Pipeline so that no test subject informs it).

    The first `n_covariates` columns of X are the covariates (see
    `features.covariates`); the rest are the features, returned adjusted."""

    def __init__(self, n_covariates: int = 0):
        self.n_covariates = n_covariates

    def _design(self, X: np.ndarray) -> np.ndarray:
        return np.column_stack([np.ones(len(X)), X[:, :self.n_covariates]])

    def fit(self, X, y=None):
        X = np.asarray(X, float)
        if X.shape[1] <= self.n_covariates:
            raise ValueError(f"CovariateAdjuster: X has {X.shape[1]} columns, not more than "
                             f"its {self.n_covariates} covariates; no feature is left.")
        self.coef_ = np.linalg.lstsq(self._design(X), X[:, self.n_covariates:], rcond=None)[0]
        return self

    def transform(self, X):
        X = np.asarray(X, float)
        return X[:, self.n_covariates:] - self._design(X) @ self.coef_


def adjusted_linear_svm(n_covariates: int, C_grid=GLOBAL_C, inner_folds: int = 3,
                        seed: int = 0) -> BaseEstimator:
    """Adjust for covariates, standardise, then a linear SVM with C chosen by inner CV:
    the classic analysis of whole-brain measures, with every step fitted per fold."""
    pipe = Pipeline([("adjust", CovariateAdjuster(n_covariates)), ("scale", StandardScaler()),
                     ("svm", SVC(kernel="linear"))])
    return GridSearchCV(pipe, {"svm__C": list(C_grid)}, scoring="balanced_accuracy",
                        cv=StratifiedKFold(inner_folds, shuffle=True, random_state=seed))


class DecoderOnArrays(ClassifierMixin, BaseEstimator):
    """nilearn's Decoder (ANOVA screening + SVC with its own inner CV) behind the
    scikit-learn contract, taking masked-voxel rows so it runs on our folds.

    The Decoder's masker would standardise every set it is given with that set's own mean
    and s.d. (test folds and the independent site included); here its standardisation is
    off and a StandardScaler fitted on the training subjects scales every set.
    """

    def __init__(self, mask: np.ndarray | None = None, grid_mm: float = 6.0,
                 screening_percentile: float = 20, seed: int = 0):
        self.mask = mask
        self.grid_mm = grid_mm
        self.screening_percentile = screening_percentile
        self.seed = seed

    def __repr__(self, N_CHAR_MAX: int = 700) -> str:
        """Every setting in full (the mask by its hash): results are keyed by this text."""
        import hashlib

        mask = (hashlib.sha256(np.ascontiguousarray(self.mask).tobytes()).hexdigest()[:16]
                if self.mask is not None else None)
        return (f"DecoderOnArrays(mask_sha256={mask}, grid_mm={self.grid_mm}, "
                f"screening_percentile={self.screening_percentile}, seed={self.seed}, "
                "scaling=StandardScaler fitted on training subjects, masker standardize=False)")

    def _images(self, X):
        from nilearn.masking import unmask

        return unmask(np.asarray(X, np.float32), self._mask_image())

    def _mask_image(self):
        from .volumes import to_image

        return to_image(self.mask.astype(np.float32), self.grid_mm)

    def fit(self, X, y):
        from nilearn.decoding import Decoder

        self.scaler_ = StandardScaler().fit(X)
        self.decoder_ = Decoder(estimator="svc", mask=self._mask_image(),
                                cv=StratifiedKFold(3, shuffle=True, random_state=self.seed),
                                screening_percentile=self.screening_percentile,
                                scoring="balanced_accuracy", standardize=False)
        with warnings.catch_warnings():  # voxels at the mask's edge can be constant in a fold
            warnings.filterwarnings("ignore", message="Features .* are constant")
            warnings.filterwarnings("ignore", message="invalid value encountered in divide")
            self.decoder_.fit(self._images(self.scaler_.transform(X)), np.asarray(y))
        self.classes_ = np.unique(y)
        return self

    def decision_function(self, X):
        return np.asarray(self.decoder_.decision_function(
            self._images(self.scaler_.transform(X)))).ravel()

    def predict(self, X):
        return np.asarray(self.decoder_.predict(
            self._images(self.scaler_.transform(X)))).astype(int)


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
        info["grid_edge"] = grid_edge(est)
        if info["grid_edge"]:
            warnings.warn(f"Chosen at the edge of the search grid: {info['grid_edge']}; "
                          "extend the grid (Profile.svm_C) past it.", stacklevel=2)
    return {"predictions": pd.DataFrame(rows), "info": info, "estimator": est}


@dataclass
class SklearnFit:
    """A scikit-learn estimator on a feature matrix, as an estimator for
    `crossval.cross_validate`: a fresh one from `make` is fitted per unit."""

    make: Callable[[], BaseEstimator]
    X: np.ndarray = field(repr=False)
    y: np.ndarray = field(repr=False)
    ids: list[str] = field(repr=False)
    #: what made `X` besides the cohort (e.g. a backbone's weights and preprocessing)
    settings: dict = field(default_factory=dict)

    def describe(self) -> dict:
        described = {"estimator": repr(self.make())}
        if self.settings:
            described["features"] = self.settings
        return described

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
