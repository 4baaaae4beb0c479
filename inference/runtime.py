"""The model runtime: joblib files in, predictions out.

A model file is read, its SHA-256 checked against the registry, and only then unpickled —
from the very bytes that were checked, so the file cannot change in between. Each version is
loaded once per process and kept; which version is active comes from the registry (through the
worker's fresh copy, project/freshness.py), so switching versions reaches every worker on its
next request.
"""

from __future__ import annotations

import hashlib
import io
import logging
import threading
import time
from dataclasses import dataclass, field
from itertools import repeat
from pathlib import Path
from typing import TYPE_CHECKING, Any

import joblib
import numpy as np
import sklearn
from django.conf import settings
from scipy.special import expit

from project import metrics
from project.errors import ModelUnavailable

if TYPE_CHECKING:
    from inference.models import ModelVersion

logger = logging.getLogger(__name__)


def model_path(relative: str) -> Path:
    return Path(settings.MODEL_DIR) / relative


@dataclass(frozen=True)
class PredictionResult:
    predictions: list[Any]  # for the answer
    probabilities: list[dict[str, float]] | None
    finite: bool = True  # False when any output is NaN or infinite (JSON cannot hold it)
    # For storage (inference/storage.py): class indices (classifiers) or values (regressors),
    # and the probability matrix.
    indices: np.ndarray | None = None
    values: np.ndarray | None = None
    matrix: np.ndarray | None = None


# Classifiers whose predict() can be read off predict_proba(), saving a second pass through the
# model. Exactly these classes, not subclasses, which could override either method; the tests in
# tests/inference check the equality on real data and on forced ties. Named, not imported: the
# imports would load scikit-learn's trees and ensembles into every worker that never uses them.
#
# For trees and forests, predict() *is* classes_[argmax(predict_proba())] in scikit-learn's source.
_PREDICT_IS_ARGMAX_OF_PROBA = frozenset(
    ("sklearn.tree._classes.DecisionTreeClassifier", "sklearn.ensemble._forest.RandomForestClassifier")
)
# For these, predict() takes the argmax of scores (or their sign, for two classes) that
# predict_proba() maps monotonically, but not strictly: two scores a hair apart can round to the
# same probability, and argmax would then pick the first class where predict() picks the other.
# So the argmax is used only where the top probability is unique; tied rows go through predict().
_PREDICT_IS_ARGMAX_UNLESS_TIED = frozenset(
    ("sklearn.linear_model._logistic.LogisticRegression", "sklearn.naive_bayes.GaussianNB")
)


def _class_name(estimator: Any) -> str:
    kind = type(estimator)
    return f"{kind.__module__}.{kind.__qualname__}"


@dataclass(frozen=True)
class LoadedModel:
    estimator: Any
    classes: list[Any] | None
    # The probabilities' keys, made once at load rather than on every request (none for a regressor).
    keys: list[str] = field(init=False, default_factory=list)
    # predict_proba's arithmetic without scikit-learn's per-call checks, where it is proven to
    # give the same numbers (see _LogisticKernel); else None and predict_proba itself.
    kernel: Any = field(init=False, default=None)

    def __post_init__(self) -> None:
        if self.classes is None:
            return
        known = getattr(self.estimator, "classes_", None)
        if known is not None and len(known) != len(self.classes):  # so the rows can zip unchecked
            raise ModelUnavailable("The model's classes do not match its registered classes.")
        object.__setattr__(self, "keys", [str(label) for label in self.classes])
        object.__setattr__(self, "kernel", _LogisticKernel.proven_for(self.estimator))

    @property
    def gives_probabilities(self) -> bool:
        return self.kernel is not None or (self.classes is not None and hasattr(self.estimator, "predict_proba"))

    def predict(self, rows: np.ndarray) -> PredictionResult:
        # Overflow is checked for below (finite), rather than warned about on every such call.
        # The rows are already a finite float matrix of the right shape (inference.features), so
        # scikit-learn's own per-call checks of them and of its parameters are skipped (with the
        # kernel, by not calling scikit-learn; rows whose top probabilities tie still go through
        # its predict, checks and all, as rare as they are).
        with np.errstate(all="ignore"):
            if self.kernel is not None:
                return self._predict(rows)
            with sklearn.config_context(assume_finite=True, skip_parameter_validation=True):
                return self._predict(rows)

    def _predict(self, rows: np.ndarray) -> PredictionResult:
        matrix = None
        if self.kernel is not None:
            matrix = self.kernel(rows)
        elif self.classes is not None and hasattr(self.estimator, "predict_proba"):
            matrix = self.estimator.predict_proba(rows)
        kind = _class_name(self.estimator)
        indices = None
        if matrix is not None and kind in _PREDICT_IS_ARGMAX_OF_PROBA:
            indices = np.argmax(matrix, axis=1)
            raw = self.estimator.classes_.take(indices)
        elif matrix is not None and kind in _PREDICT_IS_ARGMAX_UNLESS_TIED:
            indices, raw = self._argmax_unless_tied(rows, matrix)
        else:
            raw = self.estimator.predict(rows)
            if self.classes is not None:
                indices = np.searchsorted(self.estimator.classes_, raw)
        finite = not np.issubdtype(raw.dtype, np.floating) or bool(np.isfinite(raw).all())
        probabilities = None
        if matrix is not None:
            finite = finite and bool(np.isfinite(matrix).all())
            # map() builds a 1,000-row batch's dicts in about two thirds of a comprehension's time.
            probabilities = list(map(dict, map(zip, repeat(self.keys), matrix.tolist())))
        return PredictionResult(
            predictions=raw.tolist(),
            probabilities=probabilities,
            finite=finite,
            indices=indices,
            values=raw if self.classes is None else None,
            matrix=matrix,
        )

    def _argmax_unless_tied(self, rows: np.ndarray, matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        indices = np.argmax(matrix, axis=1)
        raw = self.estimator.classes_.take(indices)
        top = matrix.max(axis=1, keepdims=True)
        tied = np.flatnonzero((matrix == top).sum(axis=1) > 1)
        if tied.size:  # rare: only these rows pay for the second pass
            raw[tied] = self.estimator.predict(rows[tied])
            indices[tied] = np.searchsorted(self.estimator.classes_, raw[tied])
        return indices, raw


class _LogisticKernel:
    """LogisticRegression.predict_proba's own arithmetic, without its per-call checks.

    On one row, scikit-learn spends most of predict_proba checking the input (validate_data,
    check_array, namespaces), which inference.features has done already. The arithmetic is
    short: the decision function `X @ coef_.T + intercept_`, then softmax (several classes) or
    the logistic function (two). It is used for a model only once it gave exactly the same numbers
    as predict_proba on 256 probe rows at load; otherwise predict_proba runs as ever.
    """

    PROBE_ROWS = 256

    def __init__(self, estimator: Any) -> None:
        self.coef_t = estimator.coef_.T  # the same view scikit-learn multiplies by
        self.intercept = estimator.intercept_
        self.binary = len(estimator.classes_) <= 2

    def __call__(self, rows: np.ndarray) -> np.ndarray:
        scores = rows @ self.coef_t + self.intercept
        if self.binary:
            positive = expit(scores[:, 0])  # a binary model has one row of coefficients
            return np.stack([1 - positive, positive], axis=1)
        scores -= scores.max(axis=1).reshape((-1, 1))
        np.exp(scores, out=scores)
        scores /= scores.sum(axis=1).reshape((-1, 1))
        return scores

    @classmethod
    def proven_for(cls, estimator: Any) -> _LogisticKernel | None:
        if _class_name(estimator) != "sklearn.linear_model._logistic.LogisticRegression":
            return None
        try:
            kernel = cls(estimator)
            probe = np.random.default_rng(0).normal(0, 10, size=(cls.PROBE_ROWS, estimator.n_features_in_))
            with np.errstate(all="ignore"):
                proven = np.array_equal(kernel(probe), estimator.predict_proba(probe))
        except Exception:  # any surprise in the estimator's attributes: scikit-learn's own path
            logger.info("no fast kernel for this model: its attributes are not as expected")
            return None
        if not proven:
            logger.info("no fast kernel for this model: it disagreed with predict_proba on the probe rows")
        return kernel if proven else None


@dataclass(frozen=True)
class _CacheKey:
    pk: int
    sha256: str


_loaded: dict[_CacheKey, LoadedModel] = {}
_lock = threading.Lock()


def load(version: ModelVersion) -> LoadedModel:
    """The model of one registry row, loaded on first use and kept for the process's life."""
    key = _CacheKey(version.pk, version.sha256)
    model = _loaded.get(key)
    if model is not None:
        return model
    with _lock:  # one thread loads; the others wait for it instead of loading again
        model = _loaded.get(key)
        if model is None:
            started = time.perf_counter()
            model = _load_verified(model_path(version.file), version.sha256, version.classes)
            metrics.MODEL_LOAD.labels(version.name, str(version.version)).observe(time.perf_counter() - started)
            _loaded[key] = model
    return model


def _load_verified(path: Path, sha256: str, classes: list[Any] | None) -> LoadedModel:
    started = time.perf_counter()
    try:
        data = path.read_bytes()
    except OSError as exc:
        logger.error("model file %s cannot be read: %s", path, exc.strerror)
        error = ModelUnavailable(f"The model file {path.name} is missing or unreadable.")
        if not isinstance(exc, FileNotFoundError | NotADirectoryError | IsADirectoryError | PermissionError):
            error.retryable = None  # out of file handles, a network store's hiccup: may pass
        raise error from None
    actual = hashlib.sha256(data).hexdigest()
    if actual != sha256:
        logger.error("model file %s failed its checksum: expected %s, found %s; refusing to load", path, sha256, actual)
        raise ModelUnavailable(
            f"The model file {path.name} does not match its registered SHA-256 checksum; refusing to load it.",
            details={"expected_sha256": sha256, "actual_sha256": actual},
        )
    estimator = joblib.load(io.BytesIO(data))
    logger.info("loaded model %s in %.1f ms", path, (time.perf_counter() - started) * 1000)
    try:
        return LoadedModel(estimator=estimator, classes=classes)
    except ModelUnavailable:
        logger.error("model file %s has other classes than its registry row; refusing to load", path)
        raise


def forget_loaded_models() -> None:
    """Drop every loaded model (tests, and operators re-verifying files)."""
    with _lock:
        _loaded.clear()


def describe_estimator(estimator: Any) -> dict[str, Any]:
    """What the registry records of an estimator: task, feature count and names, classes."""
    n_features = getattr(estimator, "n_features_in_", None)
    if n_features is None:
        raise ValueError("the estimator is not fitted (it has no n_features_in_)")
    names = getattr(estimator, "feature_names_in_", None)
    classes = getattr(estimator, "classes_", None)
    return {
        "task": "classification" if classes is not None else "regression",
        "n_features": int(n_features),
        "feature_names": [str(n) for n in names] if names is not None else None,
        "classes": np.asarray(classes).tolist() if classes is not None else None,
    }
