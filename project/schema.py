"""Shared pieces of the OpenAPI document: the one error shape and its answers, what every request
string must be, and the shape of a Server-Sent Events answer.

The document is the contract a client (and tests/project/test_contract_fuzz.py) holds the
service to: a request it calls valid is not refused but for a reason it names in words (a row
the model cannot take, a user that does not exist), one it calls invalid is refused, and every
answer has a documented status, media type and shape.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from django.core.validators import RegexValidator
from drf_spectacular.extensions import OpenApiSerializerExtension, OpenApiSerializerFieldExtension
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import OpenApiResponse, inline_serializer
from rest_framework import serializers

ErrorSerializer = inline_serializer(
    name="Error",
    fields={
        "error": inline_serializer(
            name="ErrorBody",
            fields={
                "code": serializers.CharField(help_text="Stable machine-readable code, e.g. validation_error."),
                "message": serializers.CharField(help_text="Human-readable explanation."),
                "details": serializers.DictField(help_text="Per-field messages, for validation errors."),
            },
        )
    },
)


def _error(description: str) -> OpenApiResponse:
    return OpenApiResponse(ErrorSerializer, description=description)


# Every route: what authentication, the parser, the rate limiter and the error handler can answer.
ERROR_RESPONSES = {
    400: _error("Invalid input: malformed JSON, wrong types, wrong feature count."),
    401: _error("Not authenticated, or the token is invalid or expired."),
    403: _error("Authenticated but not allowed."),
    404: _error("Unknown object, or one that belongs to someone else."),
    405: _error("Method not allowed."),
    413: _error("Body or batch over the configured limit."),
    415: _error("Body is not JSON."),
    429: _error("Rate limited; see Retry-After."),
    503: _error("A backend is not configured, a model cannot be loaded, or the database is unavailable."),
}

# The routes that take an Idempotency-Key (inference/idempotency.py).
IDEMPOTENCY_RESPONSES = {
    409: _error("request_in_progress: a request with the same Idempotency-Key is still running."),
    422: _error("idempotency_key_reused: the same Idempotency-Key was sent with a different body."),
}

# The roll-out routes that can meet a model's state: nothing to roll back to, another shape.
CONFLICT_RESPONSES = {409: _error("no_previous_version or conflict: the model's state does not allow it.")}

# The routes that ask the upstream (LLM).
UPSTREAM_RESPONSES = {
    502: _error("The upstream model server failed or answered something unusable."),
    504: _error("The upstream model server did not answer in time."),
}


def sse_response(*, events: list[str], description: str) -> OpenApiResponse:
    """A `text/event-stream` answer; its schema is that of one event (OpenAPI 3.0 has no
    itemSchema; schemathesis reads `schema` as it), each event's `data` one JSON document (or
    OpenAI's closing `[DONE]`)."""
    return OpenApiResponse(
        {
            "type": "object",
            "properties": {
                "event": {"type": "string", "enum": events},
                "data": {"type": "string", "description": "JSON (or [DONE], which ends an OpenAI stream)."},
                "id": {"type": "string"},
                "retry": {"type": "integer"},
            },
            "required": ["data"],
        },
        description=description,
    )


# --- request strings -------------------------------------------------------------------------------

# The JSON parser refuses a NUL anywhere in a body (PostgreSQL can store it in neither text nor
# jsonb), and a field that may not be blank refuses one of only whitespace (DRF trims it first).
# Whitespace is spelled out as what Python's str.strip() takes off, for `\s` differs between
# regex dialects (ECMA's has U+FEFF and lacks U+001C to U+001F and U+0085).
_WHITESPACE = r"\t\n\u000b\u000c\r\u001c-\u001f \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
NO_NUL = r"^[^\u0000]*$"
NOT_BLANK = rf"^[^\u0000]*[^{_WHITESPACE}\u0000][^\u0000]*$"
# For a field that may be blank: drf-spectacular offers "" as a oneOf alternative of its own.
NOT_EMPTY = r"^[^\u0000]+$"


def request_string(**constraints: Any) -> dict[str, Any]:
    """The schema of a request string that may not be blank (and holds no NUL)."""
    return {"type": "string", "minLength": 1, "pattern": NOT_BLANK, **constraints}


class RequestCharFieldSchema(OpenApiSerializerFieldExtension):
    """Every CharField of a request says in its pattern what the service refuses: NUL, and
    for a field that may not be blank, nothing but whitespace."""

    target_class = "rest_framework.fields.CharField"
    match_subclasses = True

    def map_serializer_field(self, auto_schema: AutoSchema, direction: str) -> dict[str, Any]:
        schema = auto_schema._map_serializer_field(self.target, direction, bypass_extensions=True)
        field = self.target
        own_pattern = "pattern" in schema or any(isinstance(v, RegexValidator) for v in field.validators)
        free_text = schema.get("type") == "string" and not {"format", "enum"} & set(schema)
        if direction == "request" and free_text and not own_pattern:
            schema["pattern"] = NOT_EMPTY if field.allow_blank else NOT_BLANK
        return schema


def mapped_serializer(extension: OpenApiSerializerExtension, auto_schema: AutoSchema, direction: str) -> dict[str, Any]:
    """What drf-spectacular makes of an extension's serializer on its own, a copy to amend."""
    return copy.deepcopy(auto_schema._map_serializer(extension.target_class, direction, bypass_extensions=True))


class _RequiredBodySchema(AutoSchema):
    def _get_request_body(self, direction: str = "request") -> dict[str, Any] | None:
        body = super()._get_request_body(direction)
        if body is not None:
            body["required"] = True
        return body


def body_required(view_method: Callable) -> Callable:
    """The body is required, though none of its fields is on its own (one of two is, as its
    oneOf says): drf-spectacular would call it optional, and an empty body is a 400. Goes under
    @extend_schema, which builds on the schema class set here."""
    # drf-spectacular reads a view method's `kwargs` attribute (as @action sets it) for the
    # schema class of that action.
    setattr(view_method, "kwargs", {**getattr(view_method, "kwargs", {}), "schema": _RequiredBodySchema})  # noqa: B010
    return view_method
