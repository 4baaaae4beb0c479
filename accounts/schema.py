"""How the authentication classes appear in the OpenAPI document (imported in AppConfig.ready)."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension

# simplejwt's own JWTAuthentication is described by drf-spectacular's contrib extension ("jwtAuth").


class ApiKeyScheme(OpenApiAuthenticationExtension):
    target_class = "accounts.authentication.ApiKeyAuthentication"
    name = "apiKeyAuth"

    def get_security_definition(self, auto_schema: object) -> dict:
        return {"type": "apiKey", "in": "header", "name": "X-API-Key"}
