"""One RequestLog row per request to /api/ and /v1/, whatever its answer."""

from __future__ import annotations

import logging
import uuid

import pytest
from django.db import connection, connections, transaction
from rest_framework.test import APIClient

import inference.fast_path
from analytics.models import RequestLog
from inference.models import ModelVersion, Prediction
from tests.conftest import PASSWORD

PREDICTIONS = "/api/v1/predictions/"
IRIS_ROW = {"model": "iris", "features": [5.1, 3.5, 1.4, 0.2]}
AGENT = "mlserve-tests/1.0 (request log)"


def only_row(response) -> RequestLog:
    """The one row written for `response`, found by its X-Request-ID."""
    assert RequestLog.objects.count() == 1, list(RequestLog.objects.values("method", "path", "status"))
    row = RequestLog.objects.get()
    assert str(row.request_id) == response["X-Request-ID"]
    return row


def assert_error_row(row: RequestLog, response) -> None:
    assert row.status == response.status_code
    assert row.error_code == response.json()["error"]["code"]
    assert row.error_code


@pytest.fixture
def client(alice, client_for) -> APIClient:
    client = client_for(alice)
    client.defaults["HTTP_USER_AGENT"] = AGENT
    return client


# --- what a row holds -----------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_prediction_is_recorded_with_everything_about_it(client, alice):
    response = client.post(PREDICTIONS, IRIS_ROW, format="json")
    assert response.status_code == 201
    row = only_row(response)
    assert row.method == "POST"
    assert row.path == PREDICTIONS
    assert row.endpoint == "v1:prediction-list"
    assert row.status == 201
    assert row.error_code == ""
    assert row.latency_ms > 0
    assert row.user == alice
    assert row.auth_method == "jwt"
    assert row.client_ip == "127.0.0.1"
    assert row.user_agent == AGENT
    assert row.request_bytes == int(response.wsgi_request.META["CONTENT_LENGTH"]) > 0
    assert row.response_bytes == len(response.content)
    assert row.model == "iris"
    assert row.rows == 1
    assert row.created_at is not None


@pytest.mark.django_db
def test_a_batch_records_its_model_and_row_count(client):
    rows = [[5.1, 3.5, 1.4, 0.2]] * 3
    response = client.post(PREDICTIONS, {"model": "iris", "instances": rows}, format="json")
    assert response.status_code == 201
    row = only_row(response)
    assert (row.model, row.rows) == ("iris", 3)


@pytest.mark.django_db
def test_a_read_is_recorded_with_its_route_name_not_only_its_path(client, alice):
    response = client.get("/api/v1/models/iris/")
    assert response.status_code == 200
    row = only_row(response)
    assert (row.method, row.path, row.endpoint, row.status) == ("GET", "/api/v1/models/iris/", "v1:model-detail", 200)
    assert (row.user, row.auth_method) == (alice, "jwt")
    assert row.request_bytes == 0
    assert row.response_bytes == len(response.content)


@pytest.mark.django_db
def test_every_request_gets_its_own_request_id(client):
    first = client.get("/api/v1/models/")
    second = client.get("/api/v1/models/")
    ids = {first["X-Request-ID"], second["X-Request-ID"]}
    assert len(ids) == 2
    assert {str(i) for i in RequestLog.objects.values_list("request_id", flat=True)} == ids
    for value in ids:
        uuid.UUID(value)


# --- failures are recorded too -----------------------------------------------------------------------


@pytest.mark.django_db
def test_a_400_is_recorded(client, alice):
    response = client.generic("POST", PREDICTIONS, b'{"model": "iris", "features": [', content_type="application/json")
    assert response.status_code == 400
    row = only_row(response)
    assert_error_row(row, response)
    assert (row.endpoint, row.user, row.auth_method) == ("v1:prediction-list", alice, "jwt")
    assert row.request_bytes == len(b'{"model": "iris", "features": [')
    assert row.model == ""


@pytest.mark.django_db
def test_a_validation_400_is_recorded(client):
    response = client.post(PREDICTIONS, {"model": "iris", "features": [1, 2]}, format="json")
    assert response.status_code == 400
    assert_error_row(only_row(response), response)


@pytest.mark.django_db
def test_a_401_is_recorded_without_a_user(anon):
    response = anon.get(PREDICTIONS, HTTP_USER_AGENT=AGENT)
    assert response.status_code == 401
    row = only_row(response)
    assert_error_row(row, response)
    assert (row.user, row.auth_method) == (None, "")
    assert row.endpoint == "v1:prediction-list"
    assert row.user_agent == AGENT


@pytest.mark.django_db
def test_a_401_for_a_bad_token_is_recorded_without_a_user(alice):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Bearer not.a.jwt")
    response = client.get(PREDICTIONS)
    assert response.status_code == 401
    row = only_row(response)
    assert_error_row(row, response)
    assert (row.user, row.auth_method) == (None, "")


@pytest.mark.django_db
def test_an_admin_session_is_not_taken_for_an_api_caller(staff):
    # Logged in to the admin in the same browser, but no API credentials: a 401 with no user.
    client = APIClient()
    client.force_login(staff)
    response = client.get(PREDICTIONS)
    assert response.status_code == 401
    row = only_row(response)
    assert (row.user, row.auth_method) == (None, "")


@pytest.mark.django_db
def test_a_404_for_an_unknown_object_is_recorded(client, alice):
    response = client.get("/api/v1/predictions/123456789/")
    assert response.status_code == 404
    row = only_row(response)
    assert_error_row(row, response)
    assert (row.endpoint, row.user) == ("v1:prediction-detail", alice)


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/api/v1/no-such-route/", "/api/elsewhere", "/v1/no-such-route"])
def test_a_404_for_an_unknown_path_is_recorded(client, path):
    response = client.get(path)
    assert response.status_code == 404
    row = only_row(response)
    assert_error_row(row, response)
    assert row.path == path
    assert row.method == "GET"


@pytest.mark.django_db
def test_a_405_is_recorded(client, alice):
    response = client.delete(PREDICTIONS)
    assert response.status_code == 405
    row = only_row(response)
    assert_error_row(row, response)
    assert (row.method, row.endpoint, row.user) == ("DELETE", "v1:prediction-list", alice)


@pytest.mark.django_db
def test_a_413_is_recorded_with_the_size_of_the_body(client, settings):
    settings.MAX_REQUEST_BODY_BYTES = 64
    body = b'{"model": "iris", "features": [5.1, 3.5, 1.4, 0.2], "pad": "' + b"x" * 100 + b'"}'
    response = client.generic("POST", PREDICTIONS, body, content_type="application/json")
    assert response.status_code == 413
    row = only_row(response)
    assert_error_row(row, response)
    assert row.request_bytes == len(body)


@pytest.mark.django_db
def test_a_415_is_recorded(client):
    response = client.generic("POST", PREDICTIONS, b"model=iris", content_type="application/x-www-form-urlencoded")
    assert response.status_code == 415
    assert_error_row(only_row(response), response)


@pytest.mark.django_db
def test_a_500_is_recorded(client, alice, monkeypatch):
    def explode(*args, **kwargs):
        raise RuntimeError("the model runtime fell over")

    monkeypatch.setattr(inference.fast_path, "prediction_create", explode)
    response = client.post(PREDICTIONS, IRIS_ROW, format="json")
    assert response.status_code == 500
    row = only_row(response)
    assert_error_row(row, response)
    assert row.error_code == "internal_error"
    assert (row.user, row.auth_method, row.endpoint) == (alice, "jwt", "v1:prediction-list")


# --- the token routes ----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_login_is_recorded(anon, alice):
    response = anon.post("/api/v1/auth/token/", {"username": "alice", "password": PASSWORD}, format="json")
    assert response.status_code == 200
    row = only_row(response)
    assert (row.method, row.path, row.endpoint, row.status) == ("POST", "/api/v1/auth/token/", "v1:token-obtain", 200)
    assert row.error_code == ""
    assert row.response_bytes == len(response.content)


@pytest.mark.django_db
def test_a_failed_login_is_recorded(anon, alice):
    response = anon.post("/api/v1/auth/token/", {"username": "alice", "password": "not it"}, format="json")
    assert response.status_code == 401
    row = only_row(response)
    assert_error_row(row, response)
    assert row.endpoint == "v1:token-obtain"
    assert (row.user, row.auth_method) == (None, "")


@pytest.mark.django_db
def test_refresh_and_logout_are_recorded(anon, alice):
    tokens = anon.post("/api/v1/auth/token/", {"username": "alice", "password": PASSWORD}, format="json").json()
    refreshed = anon.post("/api/v1/auth/token/refresh/", {"refresh": tokens["refresh"]}, format="json")
    refresh = refreshed.json().get("refresh", tokens["refresh"])
    logout = anon.post("/api/v1/auth/logout/", {"refresh": refresh}, format="json")
    assert refreshed.status_code == 200
    assert logout.status_code in {200, 205}
    endpoints = list(RequestLog.objects.order_by("created_at", "id").values_list("endpoint", "status"))
    assert endpoints == [("v1:token-obtain", 200), ("v1:token-refresh", 200), ("v1:logout", logout.status_code)]


# --- what is not recorded -----------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/admin/", "/admin/login/", "/api", "/apix/models/"])
def test_no_row_outside_the_api_prefixes(client, admin_client, path):
    client.get(path)
    admin_client.get(path)
    assert not RequestLog.objects.exists()


# --- a failed request's row survives -------------------------------------------------------------------


@pytest.fixture
def keep_demo_models(django_db_setup, django_db_blocker):
    """Put the session's demo models back after a transactional test.

    A transactional test ends by truncating every table, the model registry included; the
    models are registered once per session, so later tests would find none.
    """
    with django_db_blocker.unblock():
        saved = list(ModelVersion.objects.values())
    yield
    with django_db_blocker.unblock():
        if not ModelVersion.objects.exists():
            for values in saved:
                values["registered_by_id"] = None
            ModelVersion.objects.bulk_create([ModelVersion(**values) for values in saved])


def committed_rows(request_id: str) -> list[tuple]:
    """The log rows for request_id as another connection sees them: only what was committed."""
    other = connections.create_connection("default")
    try:
        with other.cursor() as cursor:
            cursor.execute("SELECT status, error_code FROM analytics_requestlog WHERE request_id = %s", [request_id])
            return cursor.fetchall()
    finally:
        other.close()


def write_then_fail(request):
    user = request.user
    with transaction.atomic():
        version = ModelVersion.objects.get(name="iris", is_active=True)
        Prediction.objects.create(
            user=user,
            model_version=version,
            model_name=version.name,
            version=version.version,
            n_rows=1,
            outputs=b"\x00\x00",
            latency_ms=0.1,
        )
        raise RuntimeError("failed after writing")


def database_error_in_a_transaction(request):
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT 1 / 0")


# Not the django_db mark: its database fixture would be set up before keep_demo_models, and so
# torn down (tables truncated) after it. Requesting transactional_db after it orders them.
@pytest.mark.parametrize("failure", [write_then_fail, database_error_in_a_transaction])
def test_the_row_of_a_request_that_fails_in_a_transaction_is_committed(
    keep_demo_models, transactional_db, committed_demo_models, client, monkeypatch, failure
):
    monkeypatch.setattr(inference.fast_path, "prediction_create", failure)
    response = client.post(PREDICTIONS, IRIS_ROW, format="json")
    assert response.status_code == 500
    assert response.json()["error"]["code"] == "internal_error"
    assert committed_rows(response["X-Request-ID"]) == [(500, "internal_error")]
    assert not Prediction.objects.exists()  # the request's own writes were rolled back


# --- the client's address -------------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("proxies", "forwarded_for", "expected"),
    [
        ([], "203.0.113.7", "127.0.0.1"),  # no trusted proxy: the header is anyone's to write
        (["10.0.0.0/8"], "203.0.113.7", "127.0.0.1"),  # a direct connection, not from the proxy
        (["127.0.0.0/8"], "203.0.113.7", "203.0.113.7"),
        (["127.0.0.0/8"], "6.6.6.6, 203.0.113.7", "203.0.113.7"),  # the spoofed leftmost entry is ignored
        (["127.0.0.1", "10.0.0.0/8"], "6.6.6.6, 203.0.113.7, 10.0.0.2", "203.0.113.7"),
        (["127.0.0.0/8"], "6.6.6.6,2001:db8::1", "2001:db8::1"),
    ],
)
def test_the_client_address_is_the_one_the_trusted_proxy_saw(client, settings, proxies, forwarded_for, expected):
    settings.TRUSTED_PROXIES = proxies
    response = client.get("/api/v1/models/", HTTP_X_FORWARDED_FOR=forwarded_for)
    assert response.status_code == 200
    assert only_row(response).client_ip == expected


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("proxies", "forwarded_for", "remote_addr"),
    [
        (["127.0.0.0/8"], "6.6.6.6, not-an-address", "127.0.0.1"),
        (["127.0.0.0/8"], "6.6.6.6, 203.0.113.7:8080", "127.0.0.1"),
        (["127.0.0.0/8"], "6.6.6.6, " + "9" * 300, "127.0.0.1"),
        ([], "", "unix:/run/gunicorn.sock"),
    ],
)
def test_a_garbage_address_is_recorded_as_unknown_not_lost(client, settings, proxies, forwarded_for, remote_addr):
    settings.TRUSTED_PROXIES = proxies
    response = client.get("/api/v1/models/", HTTP_X_FORWARDED_FOR=forwarded_for, REMOTE_ADDR=remote_addr)
    assert response.status_code == 200
    row = only_row(response)
    assert row.client_ip is None
    assert row.status == 200


@pytest.mark.django_db
def test_overlong_fields_are_cut_not_lost(client):
    path = "/api/v1/" + "x" * 400
    response = client.get(path, HTTP_USER_AGENT="A" * 1000)
    assert response.status_code == 404
    row = only_row(response)
    assert row.path == path[:255]
    assert row.user_agent == "A" * 256


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/api/v1/%00", "/v1/chat/%00"])
def test_a_path_with_a_nul_byte_is_still_recorded(client, path, caplog):
    response = client.get(path)
    assert response.status_code == 404
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], "the row could not be written"
    assert response.has_header("X-Request-ID")
    assert RequestLog.objects.filter(request_id=response["X-Request-ID"]).exists()
