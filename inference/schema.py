"""How the inference request bodies appear in the OpenAPI document (imported in AppConfig.ready).

DRF describes each field on its own; these say what the service also holds a body to: one of
two fields and not both, the limits read from settings, and which message a role may send
without content. What a schema cannot say (a row's length is the model's feature count, a prompt
and its system message share one limit) is in the descriptions, and refused with a 400 naming
the field.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from drf_spectacular.extensions import OpenApiSerializerExtension
from drf_spectacular.openapi import AutoSchema

from inference.models import MODEL_NAME_PATTERN
from inference.text_serializers import MAX_MESSAGES, MAX_TOOLS
from project.schema import NO_NUL, mapped_serializer, request_string

_NUMBER = {"type": "number"}
ROW: dict[str, Any] = {
    "oneOf": [
        {"type": "array", "items": _NUMBER, "minItems": 1},
        {"type": "object", "additionalProperties": _NUMBER, "minProperties": 1},
    ],
    "description": "One row: numbers in the model's feature order (as many as its n_features), or an object of "
    "feature name to number (the model's feature_names, each once).",
}


def _exactly_one_of(schema: dict[str, Any], first: str, second: str) -> dict[str, Any]:
    schema["oneOf"] = [{"required": [first]}, {"required": [second]}]
    return schema


def _batch_of(items: dict[str, Any], *, most: int, what: str) -> dict[str, Any]:
    """A batch field: one item at least, and over `most` refused as too large (413)."""
    return {
        "type": "array",
        "items": items,
        "minItems": 1,
        "maxItems": most,
        "description": f"A batch of {what}; more than maxItems is a 413.",
    }


class PredictionCreateScheme(OpenApiSerializerExtension):
    target_class = "inference.serializers.PredictionCreateSerializer"

    def map_serializer(self, auto_schema: AutoSchema, direction: str) -> dict[str, Any]:
        schema = mapped_serializer(self, auto_schema, direction)
        properties = schema["properties"]
        properties["model"]["pattern"] = MODEL_NAME_PATTERN
        properties["model"]["description"] = "Default: the service's default model. An unknown name is a 404."
        properties["features"] = {**ROW, "description": "One row. " + ROW["description"]}
        properties["instances"] = _batch_of(ROW, most=settings.MAX_BATCH_ROWS, what="rows (each as `features`)")
        return _exactly_one_of(schema, "features", "instances")


class SentimentCreateScheme(OpenApiSerializerExtension):
    target_class = "inference.text_serializers.SentimentCreateSerializer"

    def map_serializer(self, auto_schema: AutoSchema, direction: str) -> dict[str, Any]:
        schema = mapped_serializer(self, auto_schema, direction)
        text = request_string(maxLength=settings.SENTIMENT_MAX_CHARS)
        schema["properties"] = {
            "text": {**text, "description": "One text."},
            "texts": _batch_of(text, most=settings.SENTIMENT_MAX_TEXTS, what="texts"),
        }
        return _exactly_one_of(schema, "text", "texts")


class GenerationCreateScheme(OpenApiSerializerExtension):
    target_class = "inference.text_serializers.GenerationCreateSerializer"

    def map_serializer(self, auto_schema: AutoSchema, direction: str) -> dict[str, Any]:
        schema = mapped_serializer(self, auto_schema, direction)
        properties = schema["properties"]
        limit = settings.GENERATION_MAX_PROMPT_CHARS
        properties["prompt"]["maxLength"] = limit
        properties["system"]["maxLength"] = limit
        properties["system"]["description"] = f"Prompt and system together: at most {limit} characters."
        properties["max_tokens"]["maximum"] = settings.GENERATION_MAX_TOKENS_LIMIT
        return schema


_CONTENT = {
    "oneOf": [
        {"type": "string", "pattern": NO_NUL},
        {"type": "array", "items": {"type": "object"}, "description": 'Content parts ({"type": "text", ...}).'},
    ]
}


def _roles(*roles: str) -> dict[str, Any]:
    # Wrapped: drf-spectacular's enum hook would take a bare enum under `properties` for the
    # `role` enum component, which has all five.
    return {"allOf": [{"enum": list(roles)}]}


class ChatMessageScheme(OpenApiSerializerExtension):
    """Every role but the assistant's needs content; a tool's answer names its call; an assistant
    message has content or tool calls."""

    target_class = "inference.text_serializers.ChatMessageSerializer"

    def map_serializer(self, auto_schema: AutoSchema, direction: str) -> dict[str, Any]:
        schema = mapped_serializer(self, auto_schema, direction)
        properties = schema["properties"]
        properties["content"] = {**_CONTENT, "nullable": True}
        properties["tool_calls"] = {"type": "array", "items": {"type": "object"}}
        if direction != "request":
            return schema
        schema["oneOf"] = [
            {
                "properties": {"role": _roles("system", "developer", "user"), "content": _CONTENT},
                "required": ["content"],
            },
            {"properties": {"role": _roles("tool"), "content": _CONTENT}, "required": ["content", "tool_call_id"]},
            {
                "properties": {"role": _roles("assistant")},
                "anyOf": [
                    {"properties": {"content": _CONTENT}, "required": ["content"]},
                    {"properties": {"tool_calls": {"minItems": 1}}, "required": ["tool_calls"]},
                ],
            },
        ]
        return schema


class ChatCompletionScheme(OpenApiSerializerExtension):
    target_class = "inference.text_serializers.ChatCompletionSerializer"

    def map_serializer(self, auto_schema: AutoSchema, direction: str) -> dict[str, Any]:
        schema = mapped_serializer(self, auto_schema, direction)
        properties = schema["properties"]
        limit = settings.GENERATION_MAX_PROMPT_CHARS
        properties["messages"].update(
            minItems=1,
            maxItems=MAX_MESSAGES,
            description=f"At most {limit} characters of content and tool calls in all.",
        )
        for name in ("max_tokens", "max_completion_tokens"):
            properties[name]["maximum"] = settings.GENERATION_MAX_TOKENS_LIMIT
        text = {"type": "string", "pattern": NO_NUL}
        properties["stop"] = {"oneOf": [text, {"type": "array", "items": text, "maxItems": 4}], "nullable": True}
        properties["response_format"] = {
            "type": "object",
            "properties": {"type": text},
            "required": ["type"],
            "nullable": True,
        }
        properties["tools"] = {"type": "array", "items": {"type": "object"}, "maxItems": MAX_TOOLS, "nullable": True}
        properties["tool_choice"] = {"oneOf": [text, {"type": "object"}], "nullable": True}
        return schema
