"""How a request proves who it comes from.

Each authentication class notes on the Django request how it authenticated, for the
request log (`auth_method`).
"""

from __future__ import annotations

from typing import Any

from rest_framework.request import Request
from rest_framework_simplejwt.authentication import JWTAuthentication as SimpleJWTAuthentication


class JWTAuthentication(SimpleJWTAuthentication):
    def authenticate(self, request: Request) -> tuple[Any, Any] | None:
        result = super().authenticate(request)
        if result is not None:
            request._request.auth_method = "jwt"
        return result
