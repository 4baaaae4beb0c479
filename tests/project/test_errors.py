"""The one error shape, on every kind of failure: never an HTML page, never a traceback."""

from __future__ import annotations

import json

import pytest
from django.test import Client
from rest_framework.test import APIClient

import inference.fast_path
import project.health
from tests.conftest import PASSWORD

# Every request under /api/ writes its request-log row, so every test needs the database.
pytestmark = pytest.mark.django_db

PREDICTIONS = "/api/v1/predictions/"
IRIS_ROW = {"model": "iris", "features": [5.1, 3.5, 1.4, 0.2]}


def assert_error(response, status: int, code: str | None = None) -> dict:
    """The response is `status` in the contract's error shape, and returns its `error` object."""
    assert response.status_code == status, response.content[:500]
    assert response["Content-Type"].split(";")[0] == "application/json"
    text = response.content.decode()
    assert "<html" not in text.lower()
    assert "Traceback" not in text
    assert 'File "' not in text
    body = response.json()
    assert set(body) == {"error"}
    error = body["error"]
    assert set(error) == {"code", "message", "details"}
    assert isinstance(error["code"], str) and error["code"]
    assert isinstance(error["message"], str) and error["message"]
    assert isinstance(error["details"], dict)
    if code is not None:
        assert error["code"] == code
    return error


@pytest.fixture
def client(alice, client_for) -> APIClient:
    return client_for(alice)


def post_raw(client: APIClient, body: bytes | str, content_type: str = "application/json", path: str = PREDICTIONS):
    return client.generic("POST", path, body, content_type=content_type)


# --- bodies that are not acceptable JSON ------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        '{"model": "iris", "features": [5.1, 3.5',
        "{'model': 'iris'}",
        '{"model": "iris",}',
        "not json at all",
        '{"model": "iris"} trailing',
    ],
)
def test_malformed_json_is_400(client, body):
    assert_error(post_raw(client, body), 400, "parse_error")


@pytest.mark.parametrize("depth", [2_000, 50_000])
def test_json_nested_thousands_deep_is_400(client, depth):
    body = '{"model": "iris", "features": ' + "[" * depth + "]" * depth + "}"
    assert_error(post_raw(client, body), 400)


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e400", "-1e400"])
def test_non_finite_numbers_are_400(client, literal):
    body = '{"model": "iris", "features": [' + literal + ", 3.5, 1.4, 0.2]}"
    error = assert_error(post_raw(client, body), 400)
    assert error["code"] in {"parse_error", "validation_error"}


def test_non_finite_numbers_in_the_login_body_are_400(anon, alice):
    body = '{"username": "alice", "password": NaN}'
    assert_error(post_raw(anon, body, path="/api/v1/auth/token/"), 400)


@pytest.mark.parametrize("body", ["[1, 2, 3]", '[{"model": "iris"}]', '"iris"', "42", "null", "true"])
def test_a_body_that_is_not_an_object_is_400(client, body):
    error = assert_error(post_raw(client, body), 400, "validation_error")
    assert error["details"]


def test_a_list_body_on_the_token_route_is_400(anon, alice):
    assert_error(post_raw(anon, '[{"username": "alice"}]', path="/api/v1/auth/token/"), 400, "validation_error")


# --- content types and charsets -----------------------------------------------------------


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=xyz", "application/xml"],
)
def test_a_body_that_is_not_json_is_415(client, content_type):
    assert_error(post_raw(client, "model=iris&features=1", content_type), 415, "unsupported_media_type")


def test_a_body_without_a_content_type_is_415(client, alice):
    response = client.generic("POST", PREDICTIONS, b'{"model": "iris"}', content_type="")
    assert_error(response, 415, "unsupported_media_type")


def test_the_token_route_refuses_a_form_body_with_415(anon, alice):
    response = anon.post("/api/v1/auth/token/", {"username": "alice", "password": "x"}, format="multipart")
    assert_error(response, 415, "unsupported_media_type")


@pytest.mark.parametrize(
    ("charset", "body"),
    [
        ("ascii", '{"model": "iris\u00e9", "features": [1, 2, 3, 4]}'.encode()),
        ("utf-16", b'{"model": "iris"}'),  # an odd number of bytes: not UTF-16
        ("utf-32", b'{"model": "iris", "features": [1]}'),
    ],
)
def test_a_charset_that_cannot_decode_the_body_is_400(client, charset, body):
    response = post_raw(client, body, f"application/json; charset={charset}")
    assert_error(response, 400, "parse_error")


def test_a_body_in_a_declared_single_byte_charset_is_decoded(client):
    body = '{"model": "iris", "features": [5.1, 3.5, 1.4, 0.2]}'.encode("latin-1")
    response = post_raw(client, body, "application/json; charset=latin-1")
    assert response.status_code == 201, response.content
    assert response.json()["model"] == "iris"


# --- sizes -------------------------------------------------------------------------------


def test_a_body_over_the_limit_is_413(client, settings):
    settings.MAX_REQUEST_BODY_BYTES = 200
    body = '{"model": "iris", "features": [5.1, 3.5, 1.4, 0.2], "pad": "' + "x" * 300 + '"}'
    assert_error(post_raw(client, body), 413, "payload_too_large")


def test_a_body_just_under_the_limit_is_accepted(client, settings):
    body = '{"model": "iris", "features": [5.1, 3.5, 1.4, 0.2]}'
    settings.MAX_REQUEST_BODY_BYTES = len(body)
    assert post_raw(client, body).status_code == 201


def test_a_body_over_the_limit_on_the_token_route_is_413(anon, alice, settings):
    settings.MAX_REQUEST_BODY_BYTES = 100
    body = '{"username": "alice", "password": "' + "x" * 200 + '"}'
    assert_error(post_raw(anon, body, path="/api/v1/auth/token/"), 413, "payload_too_large")


def test_a_batch_over_the_row_limit_is_413(client, settings):
    settings.MAX_BATCH_ROWS = 3
    response = client.post(PREDICTIONS, {"model": "iris", "instances": [[5.1, 3.5, 1.4, 0.2]] * 4}, format="json")
    error = assert_error(response, 413, "payload_too_large")
    assert "instances" in error["details"]


# --- methods and paths ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("PUT", PREDICTIONS),
        ("DELETE", PREDICTIONS),
        ("PATCH", "/api/v1/models/iris/"),
        ("DELETE", "/api/v1/models/iris/"),
        ("POST", "/api/v1/models/"),
    ],
)
def test_a_wrong_method_is_405(client, method, path):
    response = client.generic(method, path, b"{}", content_type="application/json")
    assert_error(response, 405, "method_not_allowed")


def test_get_on_the_token_route_is_405(anon):
    assert_error(anon.get("/api/v1/auth/token/"), 405, "method_not_allowed")


@pytest.mark.parametrize(
    "path",
    [
        "/api/",
        "/api/nothing-here",
        "/api/v1/",
        "/api/v1/no-such-route/",
        "/api/v2/predictions/",
        "/api/v1/predictions/not-a-number/",
        "/v1/",
        "/v1/no-such-route",
        "/v1/models/iris/extra/",
    ],
)
def test_an_unknown_path_under_the_api_prefixes_is_a_json_404(client, path):
    assert_error(client.get(path), 404, "not_found")


@pytest.mark.parametrize("path", ["/api/v1/no-such-route/", "/v1/chat/nothing"])
def test_a_post_to_an_unknown_path_is_a_json_404_even_without_a_csrf_token(alice, path):
    # Real API clients send no CSRF cookie; the answer must still be the JSON 404.
    client = APIClient(enforce_csrf_checks=True)
    response = client.post(path, {"model": "iris"}, format="json")
    assert_error(response, 404, "not_found")


def test_an_unknown_object_is_a_json_404(client):
    assert_error(client.get("/api/v1/models/no-such-model/"), 404, "not_found")
    assert_error(client.get("/api/v1/predictions/999999999/"), 404, "not_found")


def test_an_unknown_model_in_a_prediction_is_a_404_naming_the_field(client):
    response = client.post(PREDICTIONS, {"model": "no-such-model", "features": [1, 2, 3, 4]}, format="json")
    error = assert_error(response, 404, "not_found")
    assert "model" in error["details"]


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/api/v1/models/ir%00is/", None),
        ("GET", "/api/v1/predictions/?model=ir%00is", None),
        ("POST", PREDICTIONS, {"model": "ir\u0000is", "features": [5.1, 3.5, 1.4, 0.2]}),
        ("POST", PREDICTIONS, {"model": "iris", "features": {"sepal length (cm)\u0000": 5.1}}),
    ],
)
def test_a_nul_character_in_the_input_is_not_a_500(client, method, path, body):
    # PostgreSQL refuses NUL in text; that must surface as bad input or not found, never a 500.
    response = client.generic(method, path, json.dumps(body) if body else "", content_type="application/json")
    error = assert_error(response, response.status_code)
    assert response.status_code in {400, 404}, error


# --- authentication --------------------------------------------------------------------------


def test_no_credentials_is_401(anon):
    response = anon.post(PREDICTIONS, IRIS_ROW, format="json")
    assert_error(response, 401, "not_authenticated")


def test_a_bad_token_is_401(alice):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Bearer not.a.jwt")
    assert_error(client.get(PREDICTIONS), 401)


def test_a_wrong_password_is_401(anon, alice):
    response = anon.post("/api/v1/auth/token/", {"username": "alice", "password": "wrong"}, format="json")
    assert_error(response, 401)


def test_a_missing_field_on_the_token_route_is_400_naming_it(anon):
    error = assert_error(anon.post("/api/v1/auth/token/", {"username": "alice"}, format="json"), 400)
    assert "password" in error["details"]


def test_an_unacceptable_accept_header_is_answered_in_the_error_shape(client):
    response = client.get("/api/v1/models/", HTTP_ACCEPT="text/html")
    assert_error(response, 406)


# --- bugs ------------------------------------------------------------------------------------


def test_an_unhandled_exception_in_a_view_is_a_500_without_a_traceback(client, monkeypatch):
    def explode(*args, **kwargs):
        raise RuntimeError("secret internals /srv/mlserve/db-password=hunter2")

    monkeypatch.setattr(inference.fast_path, "prediction_create", explode)
    response = client.post(PREDICTIONS, IRIS_ROW, format="json")
    error = assert_error(response, 500, "internal_error")
    assert "RuntimeError" not in response.content.decode()
    assert "hunter2" not in response.content.decode()
    assert error["details"] == {}


def test_an_unhandled_exception_outside_drf_is_a_json_500(monkeypatch):
    def explode(**kwargs):
        raise RuntimeError("secret internals hunter2")

    monkeypatch.setitem(project.health._app_checks, "models", explode)
    client = Client(raise_request_exception=False)
    response = client.get("/readyz")
    assert_error(response, 500, "internal_error")
    assert "hunter2" not in response.content.decode()


# --- routes accept an optional trailing slash -------------------------------------------------


def test_a_post_without_a_trailing_slash_is_not_redirected(client):
    response = client.post(PREDICTIONS.rstrip("/"), IRIS_ROW, format="json")
    assert response.status_code == 201, response.content
    assert response.json()["prediction"] == [0]


def test_the_token_route_works_without_a_trailing_slash(anon, alice):
    response = anon.post("/api/v1/auth/token", {"username": "alice", "password": PASSWORD}, format="json")
    assert response.status_code == 200
    assert set(response.json()) >= {"access", "refresh"}


def test_a_get_without_a_trailing_slash_is_not_redirected(client):
    response = client.get("/api/v1/models/iris")
    assert response.status_code == 200
    assert response.json()["name"] == "iris"


def test_any_serializers_list_errors_render_with_string_keys():
    """DRF keys the errors of a list's items by integer index (ListField, many=True); the one
    error path turns them into JSON that any renderer can write, whatever the serializer."""
    from rest_framework import serializers

    from project.error_handlers import exception_handler
    from project.json import JSONRenderer

    class Item(serializers.Serializer):
        n = serializers.IntegerField()

    class Body(serializers.Serializer):
        numbers = serializers.ListField(child=serializers.IntegerField())
        items = Item(many=True)
        nested = serializers.DictField(child=serializers.ListField(child=serializers.IntegerField()))

    params = Body(data={"numbers": [1, "x"], "items": [{"n": 1}, {"n": "y"}], "nested": {"a": [1, "z"]}})
    assert not params.is_valid()
    with pytest.raises(serializers.ValidationError) as raised:
        params.is_valid(raise_exception=True)
    assert 1 in raised.value.detail["numbers"]  # the shape that used to make a 500

    response = exception_handler(raised.value, {})
    body = json.loads(JSONRenderer().render(response.data))
    details = body["error"]["details"]
    assert list(details["numbers"]) == ["1"]
    assert list(details["items"]) == ["1"]
    assert details["items"]["1"]["n"] == ["A valid integer is required."]
    assert list(details["nested"]["a"]) == ["1"]
