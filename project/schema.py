"""Shared pieces of the OpenAPI document: the one error shape and its answers."""

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
