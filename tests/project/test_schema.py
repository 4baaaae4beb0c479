"""GET /api/schema/ (the OpenAPI 3 document) and GET /api/docs/ (Swagger UI, served locally)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
from django.conf import settings
from drf_spectacular.validation import validate_schema

# Requests under /api/ write a request-log row.
pytestmark = pytest.mark.django_db

CONTRACT_OPERATIONS = {
    "/api/v1/auth/token/": {"post"},
    "/api/v1/auth/token/refresh/": {"post"},
    "/api/v1/auth/logout/": {"post"},
    "/api/v1/models/": {"get"},
    "/api/v1/models/{name}/": {"get"},
    "/api/v1/predictions/": {"get", "post"},
    "/api/v1/predictions/{id}/": {"get"},
}
AUTH_ROUTES = {"/api/v1/auth/token/", "/api/v1/auth/token/refresh/", "/api/v1/auth/logout/"}


@pytest.fixture
def schema(anon) -> dict[str, Any]:
    response = anon.get("/api/schema/", {"format": "json"})
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/vnd.oai.openapi+json")
    return response.json()


def resolve(schema: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    """Follow `$ref`s (and a single-entry allOf) to the schema object they name."""
    while True:
        if "$ref" in node:
            node = schema["components"]["schemas"][node["$ref"].rsplit("/", 1)[-1]]
        elif list(node.get("allOf", [])) and len(node["allOf"]) == 1:
            node = node["allOf"][0]
        else:
            return node


def json_body(schema: dict[str, Any], holder: dict[str, Any]) -> dict[str, Any]:
    return resolve(schema, holder["content"]["application/json"]["schema"])


def operation(schema: dict[str, Any], path: str, method: str) -> dict[str, Any]:
    return schema["paths"][path][method]


def properties(schema: dict[str, Any], node: dict[str, Any]) -> set[str]:
    return set(resolve(schema, node).get("properties", {}))


# --- the document -----------------------------------------------------------------------------


def test_the_schema_needs_no_credentials_and_is_valid_openapi_3(schema):
    assert schema["openapi"].startswith("3.")
    validate_schema(schema)  # raises on an invalid document


def test_the_schema_is_also_served_by_content_negotiation(anon):
    as_json = anon.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert as_json.status_code == 200
    assert as_json.json()["openapi"].startswith("3.")
    as_yaml = anon.get("/api/schema/")
    assert as_yaml.status_code == 200
    assert as_yaml.content.startswith(b"openapi: 3.")


def test_every_contract_route_is_documented_with_its_methods(schema):
    for path, methods in CONTRACT_OPERATIONS.items():
        assert path in schema["paths"], path
        documented = {m for m in schema["paths"][path] if m in {"get", "post", "put", "patch", "delete"}}
        assert methods <= documented, (path, documented)


def test_no_undocumented_write_methods_on_read_only_routes(schema):
    for path in ("/api/v1/models/", "/api/v1/models/{name}/", "/api/v1/predictions/{id}/"):
        assert not {"put", "patch", "delete"} & set(schema["paths"][path]), path


# --- request and response shapes --------------------------------------------------------------


def test_the_token_routes_document_their_bodies(schema):
    obtain = operation(schema, "/api/v1/auth/token/", "post")
    body = json_body(schema, obtain["requestBody"])
    assert {"username", "password"} <= set(body["properties"])
    assert {"username", "password"} <= set(body.get("required", []))
    assert {"access", "refresh"} <= properties(
        schema, obtain["responses"]["200"]["content"]["application/json"]["schema"]
    )

    refresh = operation(schema, "/api/v1/auth/token/refresh/", "post")
    assert "refresh" in json_body(schema, refresh["requestBody"])["properties"]
    assert "access" in json_body(schema, refresh["responses"]["200"])["properties"]

    logout = operation(schema, "/api/v1/auth/logout/", "post")
    assert "refresh" in json_body(schema, logout["requestBody"])["properties"]
    assert set(logout["responses"]) & {"200", "205"}


def test_the_model_routes_document_the_contract_fields(schema):
    contract_fields = {"name", "task", "version", "versions", "n_features", "feature_names", "classes"}
    listing = json_body(schema, operation(schema, "/api/v1/models/", "get")["responses"]["200"])
    assert "results" in listing["properties"]
    item = resolve(schema, listing["properties"]["results"]["items"])
    assert contract_fields <= set(item["properties"])
    assert set(resolve(schema, item["properties"]["task"])["enum"]) == {"classification", "regression"}

    detail = json_body(schema, operation(schema, "/api/v1/models/{name}/", "get")["responses"]["200"])
    assert contract_fields <= set(detail["properties"])
    parameters = operation(schema, "/api/v1/models/{name}/", "get")["parameters"]
    assert any(p["name"] == "name" and p["in"] == "path" for p in parameters)


def test_prediction_create_documents_its_body_and_answer(schema):
    create = operation(schema, "/api/v1/predictions/", "post")
    body = json_body(schema, create["requestBody"])
    assert {"model", "version", "features", "instances"} <= set(body["properties"])
    # `model` may be left out: the default model is used.
    assert "model" not in body.get("required", [])
    assert "201" in create["responses"]
    answer = json_body(schema, create["responses"]["201"])
    assert {"id", "model", "version", "prediction", "probabilities", "created_at"} <= set(answer["properties"])


def test_prediction_list_is_paginated_and_documents_its_filters(schema):
    listing = operation(schema, "/api/v1/predictions/", "get")
    page = json_body(schema, listing["responses"]["200"])
    assert {"results", "next", "previous"} <= set(page["properties"])
    item = resolve(schema, page["properties"]["results"]["items"])
    # A summary per prediction; the whole of it is at `url`.
    assert {"id", "url", "model", "version", "rows", "first_outputs", "created_at"} <= set(item["properties"])
    query = {p["name"] for p in listing["parameters"] if p["in"] == "query"}
    assert {"model", "since", "until"} <= query


def test_prediction_detail_documents_its_answer(schema):
    detail = operation(schema, "/api/v1/predictions/{id}/", "get")
    assert any(p["name"] == "id" and p["in"] == "path" for p in detail["parameters"])
    assert {"id", "model", "version", "prediction"} <= set(json_body(schema, detail["responses"]["200"])["properties"])


def test_a_prediction_body_holds_exactly_one_of_features_and_instances(schema):
    create = operation(schema, "/api/v1/predictions/", "post")
    assert create["requestBody"]["required"] is True  # no field is required on its own, the body is
    body = json_body(schema, create["requestBody"])
    assert body["oneOf"] == [{"required": ["features"]}, {"required": ["instances"]}]
    assert body["properties"]["instances"]["minItems"] == 1
    assert body["properties"]["instances"]["maxItems"] == settings.MAX_BATCH_ROWS


def test_a_sentiment_body_holds_exactly_one_of_text_and_texts_neither_null(schema):
    create = operation(schema, "/api/v1/sentiment/", "post")
    assert create["requestBody"]["required"] is True
    body = json_body(schema, create["requestBody"])
    assert body["oneOf"] == [{"required": ["text"]}, {"required": ["texts"]}]
    texts = body["properties"]["texts"]
    assert (texts["type"], texts["minItems"], texts["maxItems"]) == ("array", 1, settings.SENTIMENT_MAX_TEXTS)
    assert not texts.get("nullable") and not body["properties"]["text"].get("nullable")


def test_chat_completions_need_a_message_and_take_null_for_the_optional_parameters(schema):
    body = json_body(schema, operation(schema, "/v1/chat/completions", "post")["requestBody"])
    assert body["properties"]["messages"]["minItems"] == 1
    for name in ("stop", "tools", "tool_choice", "response_format", "max_tokens", "temperature", "stream"):
        assert body["properties"][name].get("nullable") is True, name


def test_streams_are_documented_as_server_sent_events(schema):
    generation = operation(schema, "/api/v1/generations/", "post")["responses"]
    assert set(generation["201"]["content"]) == {"application/json"}
    assert set(generation["200"]["content"]) == {"text/event-stream"}
    chat = operation(schema, "/v1/chat/completions", "post")["responses"]
    assert set(chat["200"]["content"]) == {"application/json", "text/event-stream"}


def _request_strings(schema: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every string a client sends: in request bodies' components and in query parameters."""
    stack: list[tuple[str, Any]] = [
        (name, component) for name, component in schema["components"]["schemas"].items() if name.endswith("Request")
    ]
    for path, methods in schema["paths"].items():
        for method, op in methods.items():
            stack += [
                (f"{method} {path} ?{p['name']}", p["schema"]) for p in op.get("parameters", []) if p["in"] == "query"
            ]
    while stack:
        where, node = stack.pop()
        if isinstance(node, dict):
            free_text = node.get("type") == "string" and not {"enum", "format"} & set(node)
            if free_text and node.get("maxLength") != 0:  # "" (a blank field's alternative) holds no NUL
                yield where, node
            stack += [(f"{where}.{key}", value) for key, value in node.items() if key != "enum"]
        elif isinstance(node, list):
            stack += [(where, item) for item in node]


def test_no_request_string_admits_a_nul(schema):
    """The JSON parser refuses a NUL anywhere in a body (PostgreSQL can store none): every request
    string's pattern says so."""
    strings = list(_request_strings(schema))
    assert len(strings) > 20
    for where, node in strings:
        assert "pattern" in node, where
        assert re.search(node["pattern"], "a\x00b") is None, where


# --- errors and authentication -------------------------------------------------------------------


def assert_error_shape(schema: dict[str, Any], response: dict[str, Any]) -> None:
    body = json_body(schema, response)
    error = resolve(schema, body["properties"]["error"])
    assert {"code", "message", "details"} <= set(error["properties"])


@pytest.mark.parametrize(
    ("path", "method", "statuses"),
    [
        ("/api/v1/predictions/", "post", {"400", "401", "404", "413", "415"}),
        ("/api/v1/predictions/", "get", {"400", "401"}),
        ("/api/v1/predictions/{id}/", "get", {"401", "404"}),
        ("/api/v1/models/", "get", {"401"}),
        ("/api/v1/models/{name}/", "get", {"401", "404"}),
        ("/api/v1/auth/token/", "post", {"400", "401"}),
        ("/api/v1/auth/token/refresh/", "post", {"400", "401"}),
        ("/api/v1/auth/logout/", "post", {"400", "401"}),
        ("/api/v1/api-keys/", "get", {"400", "401"}),
        ("/api/v1/api-keys/", "post", {"400", "401", "403"}),
        ("/api/v1/sentiment/", "post", {"400", "401", "409", "413", "422"}),
        ("/api/v1/generations/", "post", {"400", "401", "409", "422", "502", "503", "504"}),
        ("/v1/chat/completions", "post", {"400", "401", "409", "422", "502", "503", "504"}),
        ("/v1/models", "get", {"401", "502", "503", "504"}),
        ("/api/v1/analytics/usage/", "get", {"400", "401"}),
    ],
)
def test_error_answers_are_documented_in_the_one_error_shape(schema, path, method, statuses):
    responses = operation(schema, path, method)["responses"]
    assert statuses <= set(responses), sorted(responses)
    for status in statuses:
        assert_error_shape(schema, responses[status])


def test_protected_routes_document_bearer_authentication(schema):
    schemes = schema["components"].get("securitySchemes", {})
    bearer = {name for name, s in schemes.items() if s.get("type") == "http" and s.get("scheme") == "bearer"}
    assert bearer, schemes
    for path, methods in CONTRACT_OPERATIONS.items():
        if path in AUTH_ROUTES:
            continue
        for method in methods:
            security = operation(schema, path, method).get("security", schema.get("security", []))
            names = {name for requirement in security for name in requirement}
            assert names & bearer, (path, method, security)
            # Credentials are required: no anonymous alternative ({}) is offered.
            assert {} not in security, (path, method)


def test_the_token_routes_need_no_credentials(schema):
    for path in ("/api/v1/auth/token/", "/api/v1/auth/token/refresh/"):
        security = operation(schema, path, "post").get("security", schema.get("security", []))
        assert security in ([], [{}]) or {} in security, (path, security)


# --- Swagger UI -----------------------------------------------------------------------------------


@pytest.fixture
def docs_page(anon) -> str:
    response = anon.get("/api/docs/")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    return response.content.decode()


def test_the_docs_page_references_no_external_host(docs_page):
    external = re.findall(r"(?:https?:)?//[A-Za-z0-9.-]+\.[A-Za-z]{2,}[^\s\"'<>]*", docs_page)
    assert external == []
    assert "swagger-ui" in docs_page.lower()


def test_the_docs_page_assets_are_served_locally(anon, docs_page):
    assets = re.findall(r"<(?:script|link)\b[^>]*\b(?:src|href)=\"([^\"]+)\"", docs_page)
    assert any(a.endswith(".js") for a in assets)
    assert any(a.endswith(".css") for a in assets)
    for url in assets:
        parts = urlsplit(url)
        assert not parts.netloc, url
        response = anon.get(parts.path)
        assert response.status_code == 200, url
        content = b"".join(response.streaming_content) if response.streaming else response.content
        assert content, url


def test_the_docs_page_loads_the_schema_from_this_service(anon, docs_page):
    match = re.search(r'url:\s*"([^"]+)"', docs_page)
    assert match, "Swagger UI is not told where the schema is"
    assert match.group(1) == "/api/schema/"
    assert anon.get(match.group(1)).status_code == 200


def test_the_docs_page_does_not_send_the_schema_to_the_online_validator(docs_page):
    # Swagger UI's default validatorUrl is https://validator.swagger.io: every visit would show
    # an image from that host, leaking the schema URL. It must be switched off.
    assert re.search(r'"validatorUrl":\s*(null|"none")', docs_page), "validatorUrl is not disabled"


def test_the_schema_generates_without_a_single_warning(tmp_path):
    """Every view, serializer and field resolves: a warning means a route documented as `any`."""
    from django.core.management import call_command

    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(tmp_path / "schema.yaml"))
    text = (tmp_path / "schema.yaml").read_text()
    for path in ("/api/v1/sentiment/", "/api/v1/generations/", "/api/v1/api-keys/", "/v1/chat/completions"):
        assert f"{path}:" in text
