from __future__ import annotations

import tempfile
from pathlib import Path

import joblib
from sklearn.datasets import load_iris
from sklearn.tree import DecisionTreeClassifier

from inference.models import ModelVersion
from inference.services import model_register

IRIS_ROW = [5.1, 3.5, 1.4, 0.2]
IRIS_NAMED = {
    "sepal length (cm)": 5.1,
    "sepal width (cm)": 3.5,
    "petal length (cm)": 1.4,
    "petal width (cm)": 0.2,
}


def register_tree(name: str = "iris", *, activate: bool = False) -> ModelVersion:
    """A second, different iris classifier registered as the next version of `name`."""
    data = load_iris()
    estimator = DecisionTreeClassifier(max_depth=1, random_state=0).fit(data.data, data.target)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "tree.joblib"
        joblib.dump(estimator, path)
        return model_register(name=name, source=path, activate=activate, feature_names=list(data.feature_names))
