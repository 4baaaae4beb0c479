"""The lean prediction route (issue 6) keeps every promise of the slow one.

What it costs is guarded here (one statement, one Redis round trip), and what it must not give
up is checked on real gunicorn workers: a revoked key or a deactivated user refused on the very
next request in every worker, a new active model version used everywhere at once, every 201
with its prediction and its request-log row committed, and no 201 when that write fails.
"""

from __future__ import annotations

import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import psycopg
import pytest
import redis.connection
import requests
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.db import OperationalError, connection
from django.test import override_settings
from sklearn.datasets import load_iris
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.naive_bayes import GaussianNB
from sklearn.tree import DecisionTreeClassifier

from accounts.services import api_key_create, api_key_revoke
from accounts.tokens import RevocableRefreshToken
from analytics.models import RequestLog
from inference import storage
from inference.models import Prediction
from inference.runtime import LoadedModel
from project import freshness
from project.errors import ModelUnavailable
from tests.inference.helpers import IRIS_ROW, register_tree
from tests.inference.test_prediction_read_back import statements

PREDICTIONS = "/api/v1/predictions/"
DOWN_CACHE = {
    "default": {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": "redis://127.0.0.1:1/0",
        "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 0.2, "SOCKET_TIMEOUT": 0.2},
    }
}


def _count_redis_round_trips(monkeypatch) -> list[bytes]:
    sends: list[bytes] = []
    real_send = redis.connection.Connection.send_packed_command

    def counting(self, command, check_health=True):
        sends.append(command)
        return real_send(self, command, check_health)

    monkeypatch.setattr(redis.connection.Connection, "send_packed_command", counting)
    return sends


@pytest.mark.parametrize("rows", [1, 1000])
@pytest.mark.parametrize("credential", ["api_key", "jwt"])
def test_a_prediction_is_one_statement_and_one_redis_round_trip(client_for, anon, alice, monkeypatch, rows, credential):
    """No row is read (key, user and model version are the worker's current copies); the
    prediction and its log row go in one statement; the rate-limit count brings the stamps."""
    if credential == "api_key":
        client = anon
        client.credentials(HTTP_X_API_KEY=api_key_create(user=alice, name="hot", created_by=None).key)
    else:
        client = client_for(alice)
    body = {"instances": [IRIS_ROW] * rows}
    assert client.post(PREDICTIONS, body, format="json").status_code == 201  # copies loaded, ids reserved
    sends = _count_redis_round_trips(monkeypatch)
    with statements() as run:
        response = client.post(PREDICTIONS, body, format="json")
    assert response.status_code == 201
    assert len(run) == 1, [sql[:80] for sql in run]
    (sql,) = run
    assert sql.startswith("WITH item AS (SELECT * FROM json_to_recordset(")
    assert "INSERT INTO inference_prediction" in sql and "INSERT INTO analytics_requestlog" in sql
    assert len(sends) == 1
    assert response["X-RateLimit-Remaining"]


def test_every_other_route_uses_the_stock_parts():
    """Only creating a prediction has its own authentication and throttle; every other API view
    runs on simplejwt's JWTAuthentication, the API-key class and the django-ratelimit throttle."""
    from django.urls import get_resolver
    from rest_framework.settings import api_settings
    from rest_framework.views import APIView

    from inference import fast_path

    stock_auth = {cls.__name__ for cls in api_settings.DEFAULT_AUTHENTICATION_CLASSES}
    assert stock_auth == {"ApiKeyAuthentication", "JWTAuthentication"}
    seen = 0
    for pattern in _patterns(get_resolver()):
        view = getattr(pattern.callback, "cls", None)
        if view is None or not issubclass(view, APIView):
            continue
        actions = getattr(pattern.callback, "actions", None) or {}
        for method in ("get", "post", "put", "delete"):
            instance = view(**getattr(pattern.callback, "initkwargs", {}))
            instance.action_map = actions
            instance.request = type("Request", (), {"method": method.upper()})()
            if actions and method not in actions:
                continue
            authenticators = {type(a) for a in instance.get_authenticators()}
            throttles = {type(t) for t in instance.get_throttles()}
            # The two routes that make predictions: this API's and the Open Inference Protocol's.
            making = (view.__name__ == "PredictionViewSet" and actions.get(method) == "create") or (
                view.__name__ == "InferView" and method == "post"
            )
            if making:
                assert authenticators == {fast_path.PredictionAuthentication}
                assert throttles == {fast_path.PredictionThrottle}
            else:
                assert fast_path.PredictionAuthentication not in authenticators, (view, method)
                assert fast_path.PredictionThrottle not in throttles, (view, method)
            seen += 1
    assert seen > 20


def _patterns(resolver):
    for pattern in resolver.url_patterns:
        if hasattr(pattern, "url_patterns"):
            yield from _patterns(pattern)
        else:
            yield pattern


def test_the_row_is_committed_with_its_log_row_and_read_back_the_same(client_for, alice):
    client = client_for(alice)
    response = client.post(PREDICTIONS, {"features": IRIS_ROW}, format="json")
    created = response.json()
    stored = Prediction.objects.get(pk=created["id"])
    assert storage.decode_outputs(stored.outputs, [0, 1, 2]) == created["prediction"]
    assert storage.decode_probabilities(stored.probabilities, [0, 1, 2]) == created["probabilities"]
    log = RequestLog.objects.get(request_id=uuid.UUID(response["X-Request-ID"]))
    assert (log.status, log.model, log.rows, log.response_bytes) == (201, "iris", 1, len(response.content))


def test_without_postgresql_the_answer_names_the_id_the_row_got(client_for, alice, monkeypatch):
    """`make run`'s SQLite has no sequence to take ids from ahead: the row is numbered as it is
    written, and the answer (and its log row's size, and a kept Idempotency-Key answer) must say
    that id, not a stand-in. Run here through the same ORM path, with the vendor check fooled."""
    monkeypatch.setattr(connection, "vendor", "sqlite")
    client = client_for(alice)
    response = client.post(PREDICTIONS, {"features": IRIS_ROW}, format="json", HTTP_IDEMPOTENCY_KEY="orm-1")
    assert response.status_code == 201, response.content
    created = response.json()
    assert created["id"] == Prediction.objects.get().pk
    monkeypatch.undo()
    assert client.get(f"{PREDICTIONS}{created['id']}/").json()["prediction"] == created["prediction"]
    log = RequestLog.objects.get(request_id=uuid.UUID(response["X-Request-ID"]))
    assert log.response_bytes == len(response.content)
    replay = client.post(PREDICTIONS, {"features": IRIS_ROW}, format="json", HTTP_IDEMPOTENCY_KEY="orm-1")
    assert replay.json()["id"] == created["id"]


def test_a_batch_is_stored_as_typed_arrays_and_read_back_the_same(client_for, alice):
    """Inputs and probabilities as float64, outputs as int16 class indices, stored uncompressed;
    what the client sent and got is what the row gives back."""
    client = client_for(alice)
    rng = np.random.default_rng(1)
    rows = rng.uniform(0, 8, size=(1000, 4)).tolist()
    created = client.post(PREDICTIONS, {"instances": rows}, format="json").json()
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT octet_length(inputs), octet_length(outputs), octet_length(probabilities) "
            "FROM inference_prediction WHERE id = %s",
            [created["id"]],
        )
        assert cursor.fetchone() == (1000 * 4 * 8, 1000 * 2, 1000 * 3 * 8)
        cursor.execute(
            "SELECT attname, attstorage FROM pg_attribute WHERE attrelid = 'inference_prediction'::regclass "
            "AND attname IN ('inputs', 'outputs', 'probabilities')"
        )
        assert dict(cursor.fetchall()) == {"inputs": "e", "outputs": "e", "probabilities": "e"}  # no compression
    stored = client.get(f"{PREDICTIONS}{created['id']}/").json()
    assert stored["inputs"] == rows
    assert stored["prediction"] == created["prediction"]
    assert stored["probabilities"] == created["probabilities"]


def test_when_the_write_fails_the_answer_is_503_not_201(client_for, alice, monkeypatch):
    from inference import fast_path

    client = client_for(alice)
    before = Prediction.objects.count()

    def failing(group):
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(fast_path, "_insert_group", failing)
    response = client.post(PREDICTIONS, {"features": IRIS_ROW}, format="json")
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "database_unavailable"
    assert Prediction.objects.count() == before
    log = RequestLog.objects.get(request_id=uuid.UUID(response["X-Request-ID"]))  # logged as what it was
    assert (log.status, log.error_code, log.response_bytes) == (503, "database_unavailable", len(response.content))


def test_a_failed_prediction_stores_no_row(client_for, alice):
    before = Prediction.objects.count()
    response = client_for(alice).post(PREDICTIONS, {"features": [1, 2]}, format="json")
    assert response.status_code == 400
    assert Prediction.objects.count() == before


def test_a_lost_stamp_never_makes_an_old_copy_current_again(anon, alice):
    """Redis restarted or evicted the stamp: a copy from before must not pass as current."""
    created = api_key_create(user=alice, name="restart", created_by=None)
    anon.credentials(HTTP_X_API_KEY=created.key)
    stamp = freshness.stamp_key(freshness.AUTH)
    cache.delete(stamp)  # lost before the copy is loaded...
    assert anon.post(PREDICTIONS, {"features": IRIS_ROW}, format="json").status_code == 201
    api_key_revoke(api_key=created.api_key)  # ...then the revocation moves it...
    cache.delete(stamp)  # ...and it is lost again
    assert anon.post(PREDICTIONS, {"features": IRIS_ROW}, format="json").status_code == 401


def test_with_redis_down_no_copy_is_trusted(anon, alice, settings):
    """Without stamps a worker cannot know its copies are current, so it reads the rows."""
    settings.RATE_LIMIT_FAIL_OPEN = True
    created = api_key_create(user=alice, name="outage", created_by=None)
    anon.credentials(HTTP_X_API_KEY=created.key)
    assert anon.post(PREDICTIONS, {"features": IRIS_ROW}, format="json").status_code == 201  # copy loaded
    with override_settings(CACHES=DOWN_CACHE):
        type(created.api_key).objects.filter(pk=created.api_key.pk).update(revoked_at=created.api_key.created_at)
        assert anon.post(PREDICTIONS, {"features": IRIS_ROW}, format="json").status_code == 401


# --- on real gunicorn workers -----------------------------------------------------------


def _burst(url: str, *, headers: dict[str, str], count: int = 48, json: dict | None = None) -> list[requests.Response]:
    """`count` requests at once, each on its own connection, so every worker gets some."""

    def call(_: int) -> requests.Response:
        if json is None:
            return requests.get(url, headers={**headers, "Connection": "close"}, timeout=30)
        return requests.post(url, json=json, headers={**headers, "Connection": "close"}, timeout=30)

    with ThreadPoolExecutor(max_workers=16) as pool:
        return list(pool.map(call, range(count)))


def _staff_token() -> str:
    staff = get_user_model().objects.create_user(username="ops", password="x" * 20, is_staff=True)
    return str(RevocableRefreshToken.for_user(staff).access_token)


def test_a_revoked_key_fails_on_the_next_request_in_every_worker(gunicorn_server, alice):
    created = api_key_create(user=alice, name="soon revoked", created_by=None)
    staff_token = _staff_token()
    base_url = gunicorn_server(workers=4)
    key_headers = {"X-API-Key": created.key}
    warm = _burst(f"{base_url}{PREDICTIONS}", headers=key_headers, json={"features": IRIS_ROW})
    assert {r.status_code for r in warm} == {201}  # every worker holds a copy of the key now

    revoked = requests.post(
        f"{base_url}/api/v1/api-keys/{created.api_key.pk}/revoke/",
        headers={"Authorization": f"Bearer {staff_token}"},
        timeout=30,
    )
    assert revoked.status_code == 200
    after = _burst(f"{base_url}{PREDICTIONS}", headers=key_headers, json={"features": IRIS_ROW})
    assert {r.status_code for r in after} == {401}


def test_a_new_active_version_is_used_by_every_worker_at_once(gunicorn_server, alice):
    created = api_key_create(user=alice, name="versions", created_by=None)
    base_url = gunicorn_server(workers=4)
    headers = {"X-API-Key": created.key}
    before = _burst(f"{base_url}{PREDICTIONS}", headers=headers, json={"features": IRIS_ROW})
    assert {r.json()["version"] for r in before} == {1}
    tree = register_tree(activate=True)
    after = _burst(f"{base_url}{PREDICTIONS}", headers=headers, json={"features": IRIS_ROW})
    assert {r.json()["version"] for r in after} == {tree.version}


def test_a_deactivated_user_is_refused_by_every_worker(gunicorn_server, alice):
    """Saved (the admin, a service): the next request. A bulk UPDATE no signal hears of:
    within FRESHNESS_MAX_AGE_SECONDS, here 1 s."""
    bob = get_user_model().objects.create_user(username="bob-jwt", password="x" * 20)
    base_url = gunicorn_server(workers=4, FRESHNESS_MAX_AGE_SECONDS="1")
    for user, deactivate in (
        (alice, lambda u: (setattr(u, "is_active", False), u.save())),
        (bob, lambda u: get_user_model().objects.filter(pk=u.pk).update(is_active=False)),
    ):
        headers = {"Authorization": f"Bearer {RevocableRefreshToken.for_user(user).access_token}"}
        predict = {"features": IRIS_ROW}
        assert {r.status_code for r in _burst(f"{base_url}{PREDICTIONS}", headers=headers, json=predict)} == {201}
        deactivate(user)
        if user is bob:
            time.sleep(1.2)
        assert {r.status_code for r in _burst(f"{base_url}{PREDICTIONS}", headers=headers, json=predict)} == {401}


def test_every_201_has_its_rows_committed_across_workers(gunicorn_server, alice):
    created = api_key_create(user=alice, name="durable", created_by=None)
    base_url = gunicorn_server(workers=4)
    answers = _burst(
        f"{base_url}{PREDICTIONS}", headers={"X-API-Key": created.key}, count=120, json={"features": IRIS_ROW}
    )
    assert {r.status_code for r in answers} == {201}
    ids = [r.json()["id"] for r in answers]
    request_ids = [r.headers["X-Request-ID"] for r in answers]
    assert len(set(ids)) == len(ids)  # ids reserved in blocks by four processes never collide
    db_settings = settings.DATABASES["default"]
    with psycopg.connect(
        host=db_settings["HOST"], port=db_settings["PORT"], user=db_settings["USER"], dbname=db_settings["NAME"]
    ) as other:  # a second connection: only committed rows are visible to it
        stored = other.execute("SELECT count(*) FROM inference_prediction WHERE id = ANY(%s)", [ids]).fetchone()[0]
        logged = other.execute(
            "SELECT count(*) FROM analytics_requestlog WHERE request_id = ANY(%s::uuid[]) AND status = 201",
            [request_ids],
        ).fetchone()[0]
    assert stored == len(ids)
    assert logged == len(request_ids)


@pytest.mark.parametrize(
    "estimator",
    [
        LogisticRegression(max_iter=500),
        DecisionTreeClassifier(max_depth=3, random_state=0),
        RandomForestClassifier(n_estimators=10, random_state=0),
        GaussianNB(),
    ],
    ids=lambda e: type(e).__name__,
)
def test_predictions_taken_from_the_probabilities_equal_predict(estimator):
    """The runtime calls predict_proba alone for these classifiers; predict must agree everywhere."""
    data = load_iris()
    estimator.fit(data.data, data.target)
    rng = np.random.default_rng(0)
    rows = np.vstack([data.data, rng.uniform(-10, 20, size=(5000, 4))])
    result = LoadedModel(estimator=estimator, classes=estimator.classes_.tolist()).predict(rows)
    assert result.predictions == estimator.predict(rows).tolist()
    assert [max(p, key=p.get) for p in result.probabilities] == [str(c) for c in result.predictions]


def test_tied_probabilities_fall_back_to_predict():
    """Scores a hair apart round to equal probabilities; predict() still tells them apart, and
    the runtime must answer what predict() answers, not the first of the tied classes."""
    data = load_iris()
    binary = LogisticRegression(max_iter=500).fit(data.data[:100, :1], data.target[:100])
    binary.coef_[:] = 1.0
    binary.intercept_[:] = 0.0
    three = LogisticRegression(max_iter=500).fit(data.data, data.target)
    three.coef_[:] = 0.0
    three.intercept_[:] = [0.0, 1e-17, 0.0]
    for estimator, rows in ((binary, np.array([[1e-17], [-1e-17], [2.0]])), (three, data.data[:3])):
        matrix = estimator.predict_proba(rows)
        assert (matrix == matrix.max(axis=1, keepdims=True)).sum(axis=1).max() > 1  # the tie is real
        result = LoadedModel(estimator=estimator, classes=estimator.classes_.tolist()).predict(rows)
        assert result.predictions == estimator.predict(rows).tolist()
        assert result.predictions != estimator.classes_.take(np.argmax(matrix, axis=1)).tolist()


def test_probabilities_that_do_not_match_the_registered_classes_are_refused():
    """A registry row whose classes disagree with its estimator gives no mislabelled answer."""
    data = load_iris()
    estimator = LogisticRegression(max_iter=500).fit(data.data, data.target)
    with pytest.raises(ModelUnavailable):
        LoadedModel(estimator=estimator, classes=[0, 1])
    result = LoadedModel(estimator=estimator, classes=["a", "b", "c"]).predict(data.data[:2])
    assert list(result.probabilities[0]) == ["a", "b", "c"]


def test_concurrent_predictions_in_one_worker_share_commits(gunicorn_server, alice):
    """Group commit: 64 predictions at once into one threaded worker take fewer commits than
    requests (rows inserted by one transaction share its xmin), and every one is stored."""
    created = api_key_create(user=alice, name="grouped", created_by=None)
    base_url = gunicorn_server(workers=1, production_config=True)
    answers = _burst(
        f"{base_url}{PREDICTIONS}", headers={"X-API-Key": created.key}, count=64, json={"features": IRIS_ROW}
    )
    assert {r.status_code for r in answers} == {201}
    request_ids = [r.headers["X-Request-ID"] for r in answers]
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*), count(DISTINCT xmin::text) FROM analytics_requestlog WHERE request_id = ANY(%s::uuid[])",
            [request_ids],
        )
        rows, commits = cursor.fetchone()
    assert rows == 64
    assert commits < rows, "no two requests shared a commit"
    print(f"64 concurrent predictions: {commits} commits")


@pytest.mark.parametrize("binary", [False, True])
def test_the_logistic_kernel_gives_predict_probas_own_numbers(binary):
    """LogisticRegression's probabilities computed without scikit-learn's per-call checks are
    bit for bit predict_proba's, on the training rows and 5,000 random ones."""
    data = load_iris()
    target = (data.target > 0) if binary else data.target
    estimator = LogisticRegression(max_iter=500).fit(data.data, target)
    model = LoadedModel(estimator=estimator, classes=estimator.classes_.tolist())
    assert model.kernel is not None
    rows = np.vstack([data.data, np.random.default_rng(3).normal(0, 25, size=(5000, 4))])
    assert np.array_equal(model.kernel(rows), estimator.predict_proba(rows))
    result = model.predict(rows)
    assert result.predictions == estimator.predict(rows).tolist()


def test_a_model_the_kernel_does_not_reproduce_goes_through_predict_proba(caplog):
    """A LogisticRegression (the kernel's own class) whose predict_proba is not the kernel's
    arithmetic: the probe rows find it out at load, and predict_proba answers."""
    data = load_iris()
    estimator = LogisticRegression(max_iter=500).fit(data.data, data.target)
    real = estimator.predict_proba

    def tempered(X):
        return real(X) ** 0.5 / (real(X) ** 0.5).sum(axis=1, keepdims=True)

    estimator.predict_proba = tempered
    model = LoadedModel(estimator=estimator, classes=estimator.classes_.tolist())
    assert "disagreed with predict_proba" in caplog.text
    assert model.kernel is None
    (probabilities,) = model.predict(data.data[:1]).probabilities
    assert list(probabilities.values()) == estimator.predict_proba(data.data[:1])[0].tolist()


def test_the_write_is_a_prepared_statement_and_redis_replies_are_parsed_in_c(client_for, alice):
    """What the README says of the data path: statements bound on the server and prepared once
    they have run DATABASE_PREPARE_THRESHOLD times on a connection; hiredis under redis-py."""
    from django_redis import get_redis_connection

    client = client_for(alice)
    for _ in range(4):
        assert client.post(PREDICTIONS, {"features": IRIS_ROW}, format="json").status_code == 201
    with connection.cursor() as cursor:  # the same connection the requests wrote on (the test's own)
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        prepared = [row[0] for row in cursor.fetchall()]
    assert any("json_to_recordset" in statement for statement in prepared), prepared
    redis_connection = get_redis_connection("default").connection_pool.get_connection()
    assert type(redis_connection._parser).__name__ == "_HiredisParser"


def test_a_prediction_takes_the_hops_the_readme_lists(client_for, alice):
    """README, "A request in four hops": project/urls.py includes inference/urls.py, whose
    pattern is PredictionViewSet's create; the fast path's authentication and throttle run before
    it, create hands over to fast_path.prediction_create, which writes through the group commit.
    Nothing of the stock parts' own machinery (the ratelimit throttle, the middleware's write) runs."""
    import sys
    from pathlib import Path

    from django.urls import resolve

    import inference.urls
    from inference.views import PredictionViewSet

    match = resolve(PREDICTIONS)
    assert match.func.cls is PredictionViewSet and match.func.actions["post"] == "create"
    assert any(pattern.callback is match.func for pattern in inference.urls.urlpatterns)

    root = Path(settings.BASE_DIR).resolve()
    apps = tuple(str(root / name) + "/" for name in ("project", "accounts", "analytics", "inference"))
    calls: list[str] = []

    def profile(frame, event, arg):
        if event == "call" and frame.f_code.co_filename.startswith(apps):
            path = Path(frame.f_code.co_filename).relative_to(root).as_posix()
            calls.append(f"{path}:{frame.f_code.co_qualname}")

    client = client_for(alice)
    client.post(PREDICTIONS, {"features": IRIS_ROW}, format="json")  # warm: copies, ids, statements
    sys.setprofile(profile)
    try:
        response = client.post(PREDICTIONS, {"features": IRIS_ROW}, format="json")
    finally:
        sys.setprofile(None)
    assert response.status_code == 201, response.content

    hops = [
        "inference/fast_path.py:PredictionAuthentication.authenticate",
        "inference/fast_path.py:PredictionThrottle.allow_request",
        "inference/views.py:PredictionViewSet.create",
        "inference/fast_path.py:prediction_create",
        "inference/fast_path.py:_insert_group",
    ]
    positions = [calls.index(hop) for hop in hops]
    assert positions == sorted(positions), calls
    assert not [call for call in calls if call.startswith("accounts/throttles.py")], calls
    assert "analytics/recording.py:request_log_create" not in calls
    named = {call for call in calls if "<" not in call}
    print(f"{len({call.split(':')[0] for call in calls})} files, {len(named)} named functions")
