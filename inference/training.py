"""The demo models, trained from data that scikit-learn ships (no download)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import joblib
from sklearn.datasets import load_diabetes, load_iris
from sklearn.linear_model import LogisticRegression, Ridge

from inference.models import ModelVersion
from inference.runtime import model_path
from inference.services import model_register


def _train(name: str):  # noqa: ANN202 - returns (estimator, feature names)
    if name == "iris":
        data = load_iris()
        return LogisticRegression(max_iter=1000).fit(data.data, data.target), list(data.feature_names)
    if name == "diabetes":
        data = load_diabetes()
        return Ridge(alpha=0.1).fit(data.data, data.target), list(data.feature_names)
    raise ValueError(f"no demo model called {name}")


DEMO_MODELS = ("iris", "diabetes")


def demo_models_train(*, only_missing: bool) -> list[ModelVersion]:
    """Train and register the demo models; with only_missing, skip those already usable."""
    registered = []
    for name in DEMO_MODELS:
        active = ModelVersion.objects.filter(name=name, is_active=True).first()
        if only_missing and active is not None and model_path(active.file).exists():
            continue
        estimator, feature_names = _train(name)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / f"{name}.joblib"
            joblib.dump(estimator, path)
            registered.append(model_register(name=name, source=path, activate=True, feature_names=feature_names))
    return registered
