"""How the authentication classes and the API-key body appear in the OpenAPI document
(imported in AppConfig.ready)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension, OpenApiSerializerExtension
from drf_spectacular.openapi import AutoSchema

from accounts.ratelimits import RATE_PATTERN
from project.schema import mapped_serializer

# simplejwt's own JWTAuthentication is described by drf-spectacular's contrib extension ("jwtAuth").


class ApiKeyScheme(OpenApiAuthenticationExtension):
    target_class = "accounts.authentication.ApiKeyAuthentication"
    name = "apiKeyAuth"

    def get_security_definition(self, auto_schema: object) -> dict:
        return {"type": "apiKey", "in": "header", "name": "X-API-Key"}


class ApiKeyCreateScheme(OpenApiSerializerExtension):
    target_class = "accounts.serializers.ApiKeyCreateSerializer"

    def map_serializer(self, auto_schema: AutoSchema, direction: str) -> dict[str, Any]:
        schema = mapped_serializer(self, auto_schema, direction)
        properties = schema["properties"]
        # A rate, or blank (the group's rate).
        properties["rate"]["pattern"] = f"^({RATE_PATTERN.pattern})?$"
        properties["expires_at"]["description"] = "In the future; null or left out: the key does not expire."
        return schema


class ApiKeyLimitsScheme(OpenApiSerializerExtension):
    """PATCH's body: the same rate pattern as when a key is made."""

    target_class = "accounts.serializers.ApiKeyLimitsSerializer"

    def map_serializer(self, auto_schema: AutoSchema, direction: str) -> dict[str, Any]:
        schema = mapped_serializer(self, auto_schema, direction)
        schema["properties"]["rate"]["pattern"] = f"^({RATE_PATTERN.pattern})?$"
        return schema
