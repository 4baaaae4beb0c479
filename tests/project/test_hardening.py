"""Inputs that once produced a 500 or let a request slip by, found by review: each must now be a
clear 4xx (or 503) in the error shape, and every request must still leave its log row."""

import base64
import io

import orjson
import pytest
from django.db import OperationalError, connection
from rest_framework.exceptions import ParseError

from analytics.models import RequestLog
from inference.models import Generation
from project.json import MAX_JSON_DEPTH, JSONParser


def nested(depth: int, leaf: object = 1.0) -> object:
    value = leaf
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize("depth", [65, 200, 900, 1000])
def test_json_nested_below_orjsons_own_limit_is_still_400(client_for, alice, depth):
    body = '{"features": ' + "[" * depth + "1" + "]" * depth + "}"
    response = client_for(alice).post("/api/v1/predictions/", body, content_type="application/json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "parse_error"


def test_nesting_within_the_limit_is_judged_on_its_content(client_for, alice):
    response = client_for(alice).post("/api/v1/predictions/", {"features": nested(30)}, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "validation_error"


def test_an_escaped_backslash_before_u0000_is_not_a_nul(client_for, alice):
    response = client_for(alice).post(
        "/api/v1/sentiment/", b'{"text": "a literal \\\\u0000 in prose"}', content_type="application/json"
    )
    assert response.status_code == 201


@pytest.mark.parametrize(("model", "value"), [("diabetes", 1e308), ("iris", 1e308), ("iris", -1e308)])
def test_features_that_overflow_the_model_are_400(client_for, alice, model, value):
    n = 10 if model == "diabetes" else 4
    response = client_for(alice).post("/api/v1/predictions/", {"model": model, "features": [value] * n}, format="json")
    assert response.status_code == 400
    assert "features" in response.json()["error"]["details"]


@pytest.mark.parametrize("route", ["/api/v1/predictions/", "/api/v1/api-keys/"])
def test_a_well_encoded_cursor_with_a_bad_position_is_400(client_for, staff, route):
    cursor = base64.b64encode(b"p=garbage").decode()
    response = client_for(staff).get(route, {"cursor": cursor})
    assert response.status_code == 400
    assert "cursor" in response.json()["error"]["details"]


@pytest.mark.parametrize("options", [[1], "yes", True, 5])
def test_stream_options_must_be_an_object(client_for, alice, fake_openai, options):
    body = {"messages": [{"role": "user", "content": "hi"}], "stream_options": options}
    response = client_for(alice).post("/v1/chat/completions", body, format="json")
    assert response.status_code == 400
    assert "stream_options" in response.json()["error"]["details"]


def test_an_overlong_model_name_is_400_before_the_upstream_is_paid(client_for, alice, fake_openai):
    body = {"model": "m" * 150, "messages": [{"role": "user", "content": "hi"}]}
    response = client_for(alice).post("/v1/chat/completions", body, format="json")
    assert response.status_code == 400
    assert fake_openai.completion_calls() == []


def test_an_upstream_refusal_is_the_clients_400_without_its_words(client_for, alice, fake_openai):
    fake_openai.mode = "400"
    response = client_for(alice).post("/api/v1/generations/", {"prompt": "hi"}, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "upstream_rejected"
    assert "sk-" not in response.content.decode()


def test_the_system_prompt_counts_towards_the_prompt_limit(client_for, alice, fake_openai, settings):
    settings.GENERATION_MAX_PROMPT_CHARS = 100
    response = client_for(alice).post("/api/v1/generations/", {"prompt": "hi", "system": "x" * 200}, format="json")
    assert response.status_code == 400
    assert "system" in response.json()["error"]["details"]


def test_a_cached_generation_spends_no_tokens_but_reports_its_usage(client_for, alice, fake_openai):
    client = client_for(alice)
    first = client.post("/api/v1/generations/", {"prompt": "a b c", "temperature": 0}, format="json").json()
    second = client.post("/api/v1/generations/", {"prompt": "a b c", "temperature": 0}, format="json").json()
    assert second["cached"] is True
    assert second["usage"] == first["usage"]
    assert Generation.objects.get(pk=second["id"]).completion_tokens == 0
    rows = RequestLog.objects.filter(endpoint="v1:generation-list").order_by("id")
    assert [row.completion_tokens for row in rows] == [first["usage"]["completion_tokens"], 0]


def test_cached_answers_are_not_shared_between_users(client_for, alice, bob):
    text = {"text": "a sentence only alice has sent"}
    client_for(alice).post("/api/v1/sentiment/", text, format="json")
    assert client_for(bob).post("/api/v1/sentiment/", text, format="json").json()["cached"] is False


def test_a_database_outage_is_503_not_500(client_for, alice):
    client = client_for(alice)
    client.get("/api/v1/models/")  # authenticate once, so the outage hits the view's own query

    def refuse(execute, sql, params, many, context):
        if "inference_modelversion" in sql:
            raise OperationalError("connection refused")
        return execute(sql, params, many, context)

    with connection.execute_wrapper(refuse):
        response = client.get("/api/v1/models/")
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "database_unavailable"


def test_a_claimed_huge_content_length_still_leaves_a_row(client_for, alice):
    response = client_for(alice).get("/api/v1/models/", CONTENT_LENGTH="5000000000")
    assert response.status_code == 200
    row = RequestLog.objects.get(request_id=response["X-Request-ID"])
    assert row.request_bytes == 2**31 - 1


@pytest.mark.parametrize("header", ["Bearer not-a-token", "Bearer a.b.c"])
def test_bad_token_messages_are_sentences_not_python_reprs(anon, db, header):
    anon.credentials(HTTP_AUTHORIZATION=header)
    message = anon.get("/api/v1/models/").json()["error"]["message"]
    assert "ErrorDetail" not in message
    assert "{" not in message


def test_a_refresh_that_is_not_a_string_is_a_plain_error(anon, db):
    response = anon.post("/api/v1/auth/token/refresh/", {"refresh": 123}, format="json")
    assert response.status_code in (400, 401)
    assert "ErrorDetail" not in response.json()["error"]["message"]


def _depth(value: object) -> int:
    """The nesting depth, the slow obvious way, to check the parser's fast one against."""
    if isinstance(value, dict):
        return 1 + max(map(_depth, value.values()), default=0)
    if isinstance(value, list):
        return 1 + max(map(_depth, value), default=0)
    return 0


@pytest.mark.parametrize("wrap", [lambda v: [v], lambda v: {"k": v}, lambda v: [1, {"a": "b", "k": [v]}]])
def test_the_depth_limit_is_exactly_64_levels_of_lists_and_objects(wrap):
    """The parser's level-by-level depth check agrees with the recursive one on every depth
    around the limit: up to 64 levels parse, deeper is a ParseError, however they nest."""
    value: object = [1.0, 2.0]
    seen = set()
    while _depth(value) <= MAX_JSON_DEPTH + 3:
        depth = _depth(value)
        seen.add(depth)
        if depth <= MAX_JSON_DEPTH:
            assert JSONParser().parse(io.BytesIO(orjson.dumps(value))) == value
        else:
            with pytest.raises(ParseError):
                JSONParser().parse(io.BytesIO(orjson.dumps(value)))
        value = wrap(value)
    assert seen & {MAX_JSON_DEPTH - 2, MAX_JSON_DEPTH - 1, MAX_JSON_DEPTH}
    assert seen & {MAX_JSON_DEPTH + 1, MAX_JSON_DEPTH + 2, MAX_JSON_DEPTH + 3}
