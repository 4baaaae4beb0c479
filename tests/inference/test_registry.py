"""The model registry: registering, activating, checksums, loading once."""

import io
from pathlib import Path

import joblib
import pytest
from django.core.management import CommandError, call_command
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

from inference import runtime
from inference.models import ModelVersion
from inference.runtime import model_path
from tests.inference.helpers import IRIS_ROW, register_tree

PREDICTIONS = "/api/v1/predictions/"


@pytest.fixture
def iris_file(tmp_path) -> Path:
    data = load_iris()
    path = tmp_path / "my-iris.joblib"
    joblib.dump(LogisticRegression(max_iter=500, C=0.01).fit(data.data, data.target), path)
    return path


def run(*args) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_register_model_adds_the_next_version_with_its_facts(iris_file, db):
    output = run("register_model", "iris", str(iris_file))
    assert "iris v2" in output
    version = ModelVersion.objects.get(name="iris", version=2)
    assert not version.is_active  # not asked to activate
    assert version.task == "classification"
    assert version.n_features == 4
    assert version.classes == [0, 1, 2]
    assert len(version.sha256) == 64
    # Copied into the store, so editing the original changes nothing.
    stored = model_path(version.file)
    assert stored.read_bytes() == iris_file.read_bytes()
    assert stored.parent == Path(model_path("iris"))


def test_register_with_activate_switches_the_next_request(client_for, alice, iris_file):
    client = client_for(alice)
    assert client.post(PREDICTIONS, {"features": IRIS_ROW}, format="json").json()["version"] == 1
    run("register_model", "iris", str(iris_file), "--activate")
    assert client.post(PREDICTIONS, {"features": IRIS_ROW}, format="json").json()["version"] == 2
    assert ModelVersion.objects.filter(name="iris", is_active=True).count() == 1


def test_first_version_of_a_new_name_is_active(iris_file, db):
    run("register_model", "flowers", str(iris_file), "--feature-names", "a,b,c,d")
    version = ModelVersion.objects.get(name="flowers")
    assert version.is_active
    assert version.feature_names == ["a", "b", "c", "d"]


@pytest.mark.parametrize(
    "args",
    [
        ("iris", "/no/such/file.joblib"),
        ("bad name!", "FILE"),
        ("iris", "FILE", "--feature-names", "a,b"),
    ],
)
def test_register_model_refuses_bad_arguments_clearly(iris_file, db, args):
    args = [str(iris_file) if a == "FILE" else a for a in args]
    with pytest.raises(CommandError):
        run("register_model", *args)


def test_register_model_refuses_a_file_that_is_not_a_model(tmp_path, db):
    not_a_model = tmp_path / "notes.joblib"
    joblib.dump({"just": "a dict"}, not_a_model)
    with pytest.raises(CommandError, match="not a fitted scikit-learn model"):
        run("register_model", "iris", str(not_a_model))


def test_activate_model_command(client_for, alice):
    register_tree()
    run("activate_model", "iris", "2")
    assert client_for(alice).post(PREDICTIONS, {"features": IRIS_ROW}, format="json").json()["version"] == 2
    with pytest.raises(CommandError):
        run("activate_model", "iris", "9")


def test_a_tampered_model_file_is_refused_with_a_clear_error(client_for, alice, caplog):
    active = ModelVersion.objects.get(name="iris", is_active=True)
    path = model_path(active.file)
    original = path.read_bytes()
    try:
        path.write_bytes(original + b"tampered")
        response = client_for(alice).post(PREDICTIONS, {"features": IRIS_ROW}, format="json")
    finally:
        path.write_bytes(original)
    assert response.status_code == 503
    error = response.json()["error"]
    assert error["code"] == "model_unavailable"
    assert "checksum" in error["message"]
    assert "refusing to load" in caplog.text


def test_a_missing_model_file_is_503_not_500(client_for, alice):
    ModelVersion.objects.filter(name="iris").update(file="iris/gone.joblib")
    response = client_for(alice).post(PREDICTIONS, {"features": IRIS_ROW}, format="json")
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "model_unavailable"


def test_a_model_is_loaded_once_per_process(client_for, alice, monkeypatch):
    loads = []
    real_load = joblib.load
    monkeypatch.setattr(runtime.joblib, "load", lambda *a, **k: loads.append(1) or real_load(*a, **k))
    client = client_for(alice)
    for _ in range(3):
        assert client.post(PREDICTIONS, {"features": IRIS_ROW}, format="json").status_code == 201
    assert len(loads) == 1


def test_train_demo_models_if_missing_is_idempotent(db):
    assert "already registered" in run("train_demo_models", "--if-missing")
    assert ModelVersion.objects.filter(name="iris").count() == 1
    run("train_demo_models")
    assert ModelVersion.objects.get(name="iris", is_active=True).version == 2


def test_register_model_records_who_registered_it(iris_file, staff, alice):
    run("register_model", "iris", str(iris_file), "--by", "staff")
    assert ModelVersion.objects.get(name="iris", version=2).registered_by == staff
    with pytest.raises(CommandError, match="no staff user"):
        run("register_model", "iris", str(iris_file), "--by", "alice")


def _fitted(tmp_path, estimator, data, target, name: str) -> Path:
    path = tmp_path / f"{name}.joblib"
    joblib.dump(estimator.fit(data, target), path)
    return path


def test_a_new_version_with_another_shape_is_refused_unless_meant(tmp_path, db):
    """iris is a 4-feature classifier of classes 0, 1, 2: a regressor, a 3-feature model, or one
    with other classes under the same name would break every client of it at once."""
    from sklearn.linear_model import Ridge

    data = load_iris()
    regressor = _fitted(tmp_path, Ridge(), data.data, data.target, "regressor")
    three = _fitted(tmp_path, LogisticRegression(max_iter=500), data.data[:, :3], data.target, "three")
    two_classes = _fitted(tmp_path, LogisticRegression(max_iter=500), data.data, data.target > 0, "binary")
    for path, change in ((regressor, "task"), (three, "n_features"), (two_classes, "classes")):
        with pytest.raises(CommandError, match=change):
            run("register_model", "iris", str(path))
    with pytest.raises(CommandError, match="feature_names"):
        run("register_model", "iris", str(tmp_path / "binary.joblib"), "--feature-names", "a,b,c,d")
    assert ModelVersion.objects.filter(name="iris").count() == 1
    assert "iris v2" in run("register_model", "iris", str(regressor), "--allow-new-shape")
    assert ModelVersion.objects.get(name="iris", version=2).task == "regression"


def test_feature_names_carry_over_to_a_file_that_has_none(iris_file, db):
    run("register_model", "iris", str(iris_file))
    assert ModelVersion.objects.get(name="iris", version=2).feature_names == list(load_iris().feature_names)


def test_activating_a_version_of_another_shape_is_refused_unless_meant(tmp_path, client, staff, db):
    """Registering one with --allow-new-shape leaves it inactive; switching to it is what would
    break clients, so that step asks again, on the command line and in the admin."""
    from sklearn.linear_model import Ridge

    data = load_iris()
    run("register_model", "iris", str(_fitted(tmp_path, Ridge(), data.data, data.target, "r")), "--allow-new-shape")
    with pytest.raises(CommandError, match="task"):
        run("activate_model", "iris", "2")
    staff.is_superuser = True
    staff.save()
    client.force_login(staff)
    version = ModelVersion.objects.get(name="iris", version=2)
    page = client.post(
        "/admin/inference/modelversion/", {"action": "activate", "_selected_action": [version.pk]}, follow=True
    )
    assert "Not activated" in page.content.decode()
    assert ModelVersion.objects.get(name="iris", is_active=True).version == 1
    assert "now active" in run("activate_model", "iris", "2", "--allow-new-shape")
    assert ModelVersion.objects.get(name="iris", is_active=True).task == "regression"
