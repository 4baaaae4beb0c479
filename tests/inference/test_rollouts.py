"""Safe roll-outs: aliases, a canary's share, a shadow's agreement, rollback, and the comparison
of versions on real traffic, through the API, the admin, and the production server's workers."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import joblib
import numpy as np
import pytest
import requests
from django.utils import timezone
from sklearn.datasets import load_diabetes, load_iris
from sklearn.linear_model import Ridge
from sklearn.tree import DecisionTreeClassifier

from accounts.services import api_key_create
from analytics.models import RequestLog
from inference import routing, runtime, shadow
from inference.models import ModelChange, Prediction, ShadowPrediction
from inference.services import model_register
from project import metrics
from tests.inference.helpers import IRIS_ROW, register_tree


def _put_alias(client, alias, version, name="iris"):
    return client.put(f"/api/v1/models/{name}/aliases/{alias}/", {"version": version}, format="json")


def _predict(client, **body):
    return client.post("/api/v1/predictions/", {"features": IRIS_ROW, **body}, format="json")


# --- aliases -----------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_an_alias_is_set_by_staff_audited_and_followed_on_the_next_request(alice, staff, client_for):
    tree = register_tree()  # iris v2, inactive
    staff_client, client = client_for(staff), client_for(alice)
    assert _put_alias(client, "production", 1).status_code == 403
    assert _put_alias(staff_client, "production", 1).json()["version"] == 1
    first = _predict(client, model="iris@production").json()
    assert (first["model"], first["version"]) == ("iris", 1)
    answer = _put_alias(staff_client, "production", tree.version)
    assert answer.status_code == 200 and answer.json()["updated_by"] == "staff"
    assert _predict(client, model="iris@production").json()["version"] == 2  # the next request
    assert _predict(client).json()["version"] == 1  # the name alone: still the active version
    change = ModelChange.objects.filter(action="alias_set").first()  # newest first
    assert (change.alias, change.from_version, change.to_version, change.changed_by, change.via) == (
        "production",
        1,
        2,
        staff,
        "api",
    )
    assert client.get("/api/v1/models/iris@production/").json()["version"] == 2
    assert [a["alias"] for a in client.get("/api/v1/models/iris/aliases/").json()] == ["production"]
    audit = staff_client.get("/api/v1/models/iris/changes/").json()
    assert [(c["action"], c["from_version"], c["to_version"]) for c in audit[:2]] == [
        ("alias_set", 1, 2),
        ("alias_set", None, 1),
    ]
    assert staff_client.delete("/api/v1/models/iris/aliases/production/").status_code == 204
    gone = _predict(client, model="iris@production")
    assert gone.status_code == 404 and "iris@production" in gone.json()["error"]["message"]


@pytest.mark.django_db
def test_alias_requests_that_cannot_be_met_are_4xx(alice, staff, client_for):
    staff_client, client = client_for(staff), client_for(alice)
    for alias, body, status in [
        ("1st", {"version": 1}, 400),  # an alias starts with a letter
        ("a" * 51, {"version": 1}, 400),
        ("prod", {"version": "1"}, 400),
        ("prod", {}, 400),
        ("prod", {"version": 9}, 404),
    ]:
        response = staff_client.put(f"/api/v1/models/iris/aliases/{alias}/", body, format="json")
        assert response.status_code == status, (alias, body, response.content)
    assert _put_alias(staff_client, "prod", 1, name="nope").status_code == 404
    assert staff_client.delete("/api/v1/models/iris/aliases/never/").status_code == 404
    assert _put_alias(staff_client, "prod", 1).status_code == 200
    both = _predict(client, model="iris@prod", version=1)
    assert both.status_code == 400 and "version" in both.json()["error"]["details"]
    assert _predict(client, model="iris@nope").status_code == 404
    assert _predict(client, model="iris@").status_code == 404
    assert not ModelChange.objects.filter(action="alias_set", alias__in=["1st", "a" * 51]).exists()


# --- the canary --------------------------------------------------------------------------------------


@pytest.mark.parametrize("percent", [0, 0.5, 10, 25, 33.3, 50, 99, 100])
def test_the_canary_split_takes_its_share_to_within_a_request(percent):
    split = routing.CanarySplit()
    taken = sum(split.take("iris", percent) for _ in range(10_000))
    assert abs(taken - 10_000 * percent / 100) <= 1
    # and spread out, not in runs: every 1,000 requests hold their share too
    split = routing.CanarySplit()
    for _ in range(10):
        taken = sum(split.take("iris", percent) for _ in range(1_000))
        assert abs(taken - 1_000 * percent / 100) <= 1


@pytest.mark.django_db
def test_a_canary_answers_its_share_of_default_requests_only(alice, staff, client_for, settings):
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "predictions": "100000/m"}
    tree = register_tree()
    staff_client, client = client_for(staff), client_for(alice)
    response = staff_client.put(
        "/api/v1/models/iris/rollout/", {"canary": {"version": tree.version, "percent": 20}}, format="json"
    )
    assert response.status_code == 200, response.content
    assert response.json()["canary"] == {"version": 2, "percent": 20.0}
    versions = [_predict(client).json()["version"] for _ in range(500)]
    assert abs(versions.count(2) - 100) <= 1  # 20% of 500, to within a request
    # a client that names a version or an alias gets exactly that
    assert {_predict(client, version=1).json()["version"] for _ in range(20)} == {1}
    _put_alias(staff_client, "stable", 1)
    assert {_predict(client, model="iris@stable").json()["version"] for _ in range(20)} == {1}
    # the records say which version answered
    assert Prediction.objects.filter(version=2).count() == versions.count(2)
    assert RequestLog.objects.filter(model="iris", model_version=2).count() == versions.count(2)
    assert staff_client.delete("/api/v1/models/iris/rollout/").status_code == 204
    assert {_predict(client).json()["version"] for _ in range(20)} == {1}
    assert [c.action for c in ModelChange.objects.filter(action__startswith="rollout")] == [
        "rollout_ended",
        "rollout_set",
    ]


@pytest.mark.django_db
def test_a_rollout_that_cannot_be_met_is_4xx(alice, staff, client_for, tmp_path):
    register_tree()
    data = load_iris()
    path = tmp_path / "three.joblib"
    joblib.dump(DecisionTreeClassifier(max_depth=2).fit(data.data[:, :3], data.target), path)
    model_register(name="iris", source=path, allow_new_shape=True)  # v3: three features
    staff_client = client_for(staff)
    url = "/api/v1/models/iris/rollout/"
    for body, status in [
        ({}, 400),
        ({"canary": None, "shadow": None}, 400),
        ({"canary": {"version": 2}}, 400),
        ({"canary": {"version": 2, "percent": 101}}, 400),
        ({"canary": {"version": 2, "percent": "10"}}, 400),
        ({"canary": {"version": 1, "percent": 10}}, 400),  # the active version itself
        ({"canary": {"version": 3, "percent": 10}}, 400),  # another shape
        ({"shadow": {"version": 3}}, 400),
        ({"shadow": {"version": 99}}, 404),
    ]:
        response = staff_client.put(url, body, format="json")
        assert response.status_code == status, (body, response.content)
    assert client_for(alice).put(url, {"shadow": {"version": 2}}, format="json").status_code == 403
    assert client_for(alice).get(url).status_code == 403
    assert staff_client.delete(url).status_code == 404
    assert staff_client.get(url).json() == {
        "name": "iris",
        "canary": None,
        "shadow": None,
        "started_by": None,
        "started_at": None,
    }
    assert (
        staff_client.put("/api/v1/models/nope/rollout/", {"shadow": {"version": 2}}, format="json").status_code == 404
    )


# --- rollback and activation -------------------------------------------------------------------------


@pytest.mark.django_db
def test_rollback_puts_back_the_previous_active_version_one_step_at_a_time(alice, staff, client_for):
    register_tree()  # v2
    register_tree()  # v3
    staff_client, client = client_for(staff), client_for(alice)
    assert staff_client.post("/api/v1/models/iris/activate/", {"version": 2}, format="json").json() == {
        "name": "iris",
        "version": 2,
        "previous": 1,
    }
    staff_client.post("/api/v1/models/iris/activate/", {"version": 3}, format="json")
    assert _predict(client).json()["version"] == 3
    assert staff_client.post("/api/v1/models/iris/rollback/").json() == {"name": "iris", "version": 2, "previous": 3}
    assert _predict(client).json()["version"] == 2
    assert staff_client.post("/api/v1/models/iris/rollback/").json()["version"] == 1
    refused = staff_client.post("/api/v1/models/iris/rollback/")
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "no_previous_version"
    assert client.post("/api/v1/models/iris/rollback/").status_code == 403
    assert staff_client.post("/api/v1/models/nope/rollback/").status_code == 404
    audit = [(c.action, c.from_version, c.to_version) for c in ModelChange.objects.filter(name="iris")[:4]]
    assert audit == [("rolled_back", 2, 1), ("rolled_back", 3, 2), ("activated", 2, 3), ("activated", 1, 2)]
    assert staff_client.post("/api/v1/models/iris/activate/", {"version": 9}, format="json").status_code == 404


@pytest.mark.django_db
def test_activating_another_shape_is_a_conflict_unless_meant(staff, client_for, tmp_path):
    data = load_iris()
    path = tmp_path / "three.joblib"
    joblib.dump(DecisionTreeClassifier(max_depth=2).fit(data.data[:, :3], data.target), path)
    model_register(name="iris", source=path, allow_new_shape=True)
    staff_client = client_for(staff)
    refused = staff_client.post("/api/v1/models/iris/activate/", {"version": 2}, format="json")
    assert refused.status_code == 409 and "allow_new_shape" in refused.json()["error"]["message"]
    meant = staff_client.post("/api/v1/models/iris/activate/", {"version": 2, "allow_new_shape": True}, format="json")
    assert meant.json()["version"] == 2


# --- shadows and the comparison ----------------------------------------------------------------------


def _iris_rows(count: int) -> list[list[float]]:
    data = load_iris().data
    return [data[i % len(data)].tolist() for i in range(count)]


def _drained() -> None:
    assert shadow.runner.wait_until_idle(timeout=60), "the shadow queue did not drain"


@pytest.mark.django_db(transaction=True)
def test_a_shadow_runs_on_every_default_request_and_its_agreement_is_what_the_two_models_give(
    committed_demo_models, alice, staff, client_for, settings
):
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "predictions": "100000/m"}
    tree = register_tree()
    staff_client, client = client_for(staff), client_for(alice)
    rows = _iris_rows(150)
    without_shadow = [client.post("/api/v1/predictions/", {"features": r}, format="json").json() for r in rows[:5]]
    started = staff_client.put("/api/v1/models/iris/rollout/", {"shadow": {"version": 2}}, format="json")
    assert started.status_code == 200
    answers = [client.post("/api/v1/predictions/", {"features": r}, format="json").json() for r in rows]
    batch = client.post("/api/v1/predictions/", {"instances": rows[:50]}, format="json").json()
    pinned = client.post("/api/v1/predictions/", {"features": rows[0], "version": 1}, format="json").json()
    _drained()
    # the answer is the active version's, exactly as without a shadow
    assert {a["version"] for a in answers} == {1}
    for before, after in zip(without_shadow, answers[:5], strict=True):
        assert (before["prediction"], before["probabilities"]) == (after["prediction"], after["probabilities"])
    shadows = ShadowPrediction.objects.all()
    assert shadows.count() == 151  # every default request, and not the one that pinned a version
    assert not shadows.filter(prediction_id=pinned["id"]).exists()
    linked = shadows.get(prediction_id=batch["id"])
    assert (linked.n_rows, linked.version, linked.answered_version) == (50, 2, 1)
    # the agreement, from the two models themselves on the same rows
    active = runtime.load(Prediction.objects.get(pk=batch["id"]).model_version).estimator
    matrix = np.array(rows + rows[:50])
    expected = float(np.mean(active.predict(matrix) == tree_estimator(tree).predict(matrix)))
    compare = staff_client.get("/api/v1/models/iris/rollout/compare/").json()
    by_version = {v["version"]: v for v in compare["versions"]}
    assert by_version[2]["roles"] == ["shadow"] and by_version[2]["requests"] == 0
    assert by_version[2]["shadow"]["runs"] == 151 and by_version[2]["shadow"]["rows"] == 200
    assert by_version[2]["shadow"]["agreement"] == pytest.approx(expected, abs=1e-6)
    assert 0 < expected < 1  # the two really differ: the test could fail
    assert by_version[2]["shadow"]["latency_ms"]["p50"] is not None
    assert by_version[1]["requests"] == 5 + 150 + 1 + 1 and by_version[1]["errors"] == 0
    assert by_version[1]["latency_ms"]["p95"] >= by_version[1]["latency_ms"]["p50"] > 0
    assert client_for(alice).get("/api/v1/models/iris/rollout/compare/").status_code == 403


def tree_estimator(version):
    return runtime.load(version).estimator


@pytest.mark.django_db(transaction=True)
def test_a_regressors_shadow_is_compared_by_its_mean_absolute_difference(
    committed_demo_models, alice, staff, client_for
):
    data = load_diabetes()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "ridge.joblib"
        joblib.dump(Ridge(alpha=10.0).fit(data.data, data.target), path)
        ridge = model_register(name="diabetes", source=path)
    client_for(staff).put("/api/v1/models/diabetes/rollout/", {"shadow": {"version": ridge.version}}, format="json")
    rows = data.data[:40].tolist()
    client = client_for(alice)
    answered = client.post("/api/v1/predictions/", {"model": "diabetes", "instances": rows}, format="json").json()
    _drained()
    shadow_values = tree_estimator(ridge).predict(np.array(rows))
    expected = float(np.mean(np.abs(shadow_values - np.array(answered["prediction"]))))
    compare = client_for(staff).get("/api/v1/models/diabetes/rollout/compare/").json()
    runs = next(v for v in compare["versions"] if v["version"] == ridge.version)["shadow"]
    assert runs["agreement"] is None
    assert runs["mean_abs_diff"] == pytest.approx(expected, rel=1e-6) and expected > 1


@pytest.mark.django_db(transaction=True)
def test_a_full_shadow_queue_drops_copies_and_counts_them_without_touching_the_answers(
    committed_demo_models, alice, staff, client_for, settings, monkeypatch
):
    import threading

    settings.SHADOW_QUEUE_ROWS = 2
    settings.SHADOW_BATCH_SECONDS = 0  # no gathering: the thread takes what waits, then holds
    register_tree()
    client_for(staff).put("/api/v1/models/iris/rollout/", {"shadow": {"version": 2}}, format="json")
    release = threading.Event()
    real_write = shadow._write

    def held(rows):
        release.wait(30)
        real_write(rows)

    monkeypatch.setattr(shadow, "_write", held)
    monkeypatch.setattr(shadow, "runner", shadow.ShadowRunner())  # a queue of this test's size
    dropped = metrics.SHADOW_RUNS.labels("iris", "dropped")
    before = dropped._value.get()
    client = client_for(alice)
    statuses = [_predict(client).status_code for _ in range(10)]
    assert statuses == [201] * 10
    release.set()
    _drained()
    stored = ShadowPrediction.objects.count()
    # the thread's first batch (one or two copies, held), two waiting in the queue, the rest dropped
    assert 3 <= stored <= 4
    assert dropped._value.get() - before == 10 - stored
    assert Prediction.objects.count() == 10


@pytest.mark.django_db
def test_compare_counts_errors_against_the_version_that_answered(alice, staff, client_for):
    client = client_for(alice)
    _predict(client)
    client.post("/api/v1/predictions/", {"features": [1e308, 1e308, 1e308, 1e308]}, format="json")  # 400, v1
    client.post("/api/v1/predictions/", {"features": [1, 2]}, format="json")  # 400, v1
    compare = client_for(staff).get("/api/v1/models/iris/rollout/compare/").json()
    assert compare["active"] == 1 and compare["canary"] is None and compare["shadow"] is None
    (only,) = compare["versions"]
    assert (only["version"], only["requests"], only["errors"], only["roles"]) == (1, 3, 2, ["active"])
    assert only["error_rate"] == pytest.approx(2 / 3, abs=1e-6)
    staff_client = client_for(staff)
    assert staff_client.get("/api/v1/models/nope/rollout/compare/").status_code == 404
    future = (timezone.now() + timezone.timedelta(days=2)).isoformat()
    bad = staff_client.get("/api/v1/models/iris/rollout/compare/", {"start": future, "end": "2020-01-01T00:00:00Z"})
    assert bad.status_code == 400


# --- the admin ---------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_staff_manage_aliases_rollouts_and_rollback_in_the_admin(client, django_user_model):
    admin_user = django_user_model.objects.create_superuser("root", password="pw-for-tests-only")
    client.force_login(admin_user)
    tree = register_tree()
    response = client.post(
        "/admin/inference/modelalias/add/", {"name": "iris", "alias": "production", "model_version": tree.pk}
    )
    assert response.status_code == 302, response.content
    change = ModelChange.objects.get(action="alias_set")
    assert (change.to_version, change.changed_by, change.via) == (2, admin_user, "admin")
    wrong = client.post(
        "/admin/inference/modelalias/add/", {"name": "diabetes", "alias": "x", "model_version": tree.pk}
    )
    assert wrong.status_code == 200 and b"is not a version of diabetes" in wrong.content
    response = client.post(
        "/admin/inference/rollout/add/", {"name": "iris", "canary": tree.pk, "canary_percent": "10", "shadow": ""}
    )
    assert response.status_code == 302, response.content
    assert ModelChange.objects.filter(action="rollout_set", via="admin").exists()
    from inference.services import model_activate

    model_activate(name="iris", version=2)
    response = client.post(
        "/admin/inference/modelversion/",
        {"action": "rollback", "_selected_action": [tree.pk]},
        follow=True,
    )
    assert b"rolled back to v1" in response.content
    for page in ("modelalias", "rollout", "modelchange", "shadowprediction"):
        assert client.get(f"/admin/inference/{page}/").status_code == 200, page


# --- every worker ------------------------------------------------------------------------------------


def test_aliases_canary_and_rollback_reach_every_worker_on_their_next_request(gunicorn_server, alice, staff):
    base = gunicorn_server(workers=3, production_config=True)
    tree = register_tree()
    key = api_key_create(user=alice, name="workers", created_by=None, rate="100000/m").key
    staff_key = api_key_create(user=staff, name="staff", created_by=None).key
    session = requests.Session()

    def versions(count: int, **body) -> list[int]:
        found = []
        for _ in range(count):
            response = session.post(
                f"{base}/api/v1/predictions/",
                json={"features": IRIS_ROW, **body},
                headers={"X-API-Key": key},
                timeout=30,
            )
            assert response.status_code == 201, response.text
            found.append(response.json()["version"])
        return found

    def staff_call(method: str, path: str, body=None) -> requests.Response:
        response = session.request(method, f"{base}{path}", json=body, headers={"X-API-Key": staff_key}, timeout=30)
        assert response.ok, response.text
        return response

    assert set(versions(30)) == {1}  # every worker has its copies now
    staff_call("PUT", "/api/v1/models/iris/aliases/production/", {"version": tree.version})
    assert set(versions(30, model="iris@production")) == {2}
    staff_call("POST", "/api/v1/models/iris/activate/", {"version": 2})
    assert set(versions(30)) == {2}
    staff_call("POST", "/api/v1/models/iris/rollback/")
    assert set(versions(30)) == {1}
    staff_call("PUT", "/api/v1/models/iris/rollout/", {"canary": {"version": 2, "percent": 25}})
    split = versions(400)
    # each worker takes its own 25% to within a request: three workers, within three
    assert abs(split.count(2) - 100) <= 3, split.count(2)
    body = json.loads(staff_call("GET", "/api/v1/models/iris/rollout/compare/").text)
    session.close()
    by_version = {v["version"]: v["requests"] for v in body["versions"]}
    assert by_version[2] == 30 + 30 + split.count(2)  # by alias, while active, as the canary


@pytest.mark.django_db
def test_the_prediction_list_filters_by_alias_too(alice, staff, client_for):
    tree = register_tree()
    client = client_for(alice)
    _predict(client)
    _predict(client, version=tree.version)
    _put_alias(client_for(staff), "production", tree.version)
    found = client.get("/api/v1/predictions/", {"model": "iris@production"}).json()["results"]
    assert [(p["model"], p["version"]) for p in found] == [("iris", 2)]
    assert len(client.get("/api/v1/predictions/", {"model": "iris"}).json()["results"]) == 2
    assert client.get("/api/v1/predictions/", {"model": "iris@nope"}).status_code == 404
    assert client.get("/api/v1/predictions/", {"model": "iris@1x@y"}).status_code == 400


def test_shadow_runs_happen_under_the_production_server(gunicorn_server, alice, staff):
    """Its answers are sent and closed by the production server (granian), whose close of each
    response is what queues the shadow's copy."""
    import time

    base = gunicorn_server(workers=2, production_config=True)
    register_tree()
    from inference.rollouts import rollout_set

    rollout_set(name="iris", canary_version=None, canary_percent=0, shadow_version=2, by=None, via="api")
    key = api_key_create(user=alice, name="shadowed", created_by=None).key
    session = requests.Session()
    ids = []
    for _ in range(20):
        response = session.post(
            f"{base}/api/v1/predictions/", json={"features": IRIS_ROW}, headers={"X-API-Key": key}, timeout=30
        )
        assert response.status_code == 201, response.text
        ids.append(response.json()["id"])
    session.close()
    deadline = time.monotonic() + 60
    while ShadowPrediction.objects.count() < 20 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert sorted(ShadowPrediction.objects.values_list("prediction_id", flat=True)) == sorted(ids)
    assert set(ShadowPrediction.objects.values_list("version", "answered_version")) == {(2, 1)}


@pytest.mark.django_db
def test_rollback_undoes_activations_in_turn_and_never_ping_pongs(staff, client_for):
    register_tree()  # v2
    register_tree()  # v3
    staff_client = client_for(staff)
    for version in (2, 1, 3):
        staff_client.post("/api/v1/models/iris/activate/", {"version": version}, format="json")
    rolled = [staff_client.post("/api/v1/models/iris/rollback/") for _ in range(4)]
    assert [r.json().get("version") for r in rolled[:3]] == [1, 2, 1]
    assert rolled[3].status_code == 409


@pytest.mark.django_db
def test_a_switch_of_the_active_version_drops_a_canary_or_shadow_it_makes_pointless(staff, client_for):
    register_tree()  # v2
    register_tree()  # v3
    staff_client = client_for(staff)
    staff_client.put(
        "/api/v1/models/iris/rollout/",
        {"canary": {"version": 2, "percent": 10}, "shadow": {"version": 3}},
        format="json",
    )
    staff_client.post("/api/v1/models/iris/activate/", {"version": 2}, format="json")  # the canary, promoted
    assert staff_client.get("/api/v1/models/iris/rollout/").json()["canary"] is None
    assert staff_client.get("/api/v1/models/iris/rollout/").json()["shadow"] == {"version": 3}
    staff_client.post("/api/v1/models/iris/activate/", {"version": 3}, format="json")
    assert staff_client.get("/api/v1/models/iris/rollout/").json()["shadow"] is None
    ended = ModelChange.objects.filter(action="rollout_ended").get()
    assert "became active" in ended.details["reason"]


@pytest.mark.django_db
def test_a_canary_must_give_probabilities_as_the_active_version_does(staff, client_for, tmp_path):
    from sklearn.svm import LinearSVC

    data = load_iris()
    path = tmp_path / "svc.joblib"
    joblib.dump(LinearSVC().fit(data.data, data.target), path)  # no predict_proba
    model_register(name="iris", source=path)
    response = client_for(staff).put(
        "/api/v1/models/iris/rollout/", {"canary": {"version": 2, "percent": 10}}, format="json"
    )
    assert response.status_code == 400 and "probabilities" in response.json()["error"]["message"]


@pytest.mark.django_db
def test_names_no_model_can_have_are_404_on_every_rollout_route(staff, client_for):
    staff_client = client_for(staff)
    for method, path in [
        ("delete", "/api/v1/models/ir%00is/rollout/"),
        ("delete", "/api/v1/models/iris/aliases/a%00b/"),
        ("get", "/api/v1/models/ir%00is/rollout/"),
        ("get", "/api/v1/models/ir%00is/rollout/compare/"),
        ("post", "/api/v1/models/ir%00is/rollback/"),
        ("get", "/api/v1/models/ir%00is/changes/"),
        ("get", "/api/v1/models/ir%00is/aliases/"),
    ]:
        response = getattr(staff_client, method)(path)
        assert response.status_code == 404, (method, path, response.content)
