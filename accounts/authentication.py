"""How a request proves who it comes from: an API key, or a JWT access token.

Each class notes on the Django request how it authenticated, for the request log.
"""

from __future__ import annotations

from typing import Any

from django.utils import timezone
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.request import Request
from rest_framework_simplejwt.authentication import JWTAuthentication as SimpleJWTAuthentication

from accounts.keys import looks_like_key
from accounts.models import ApiKey
from accounts.selectors import api_key_find
from accounts.services import api_key_mark_used

API_KEY_HEADER = "HTTP_X_API_KEY"


class ApiKeyAuthentication(BaseAuthentication):
    """`X-API-Key: <key>`, or `Authorization: Bearer <key>` for the OpenAI SDKs.

    A Bearer value without the key start is left to the JWT class. The key row is read on every
    request, so a revocation holds from the very next request in every worker.
    """

    def authenticate(self, request: Request) -> tuple[Any, ApiKey] | None:
        key = self._presented_key(request)
        if key is None:
            return None
        api_key = api_key_find(key=key)
        now = timezone.now()
        if api_key is None:
            raise AuthenticationFailed("Invalid API key.")
        if not api_key.is_usable(now=now):
            raise AuthenticationFailed("This API key is revoked or expired.")
        if not api_key.user.is_active:
            raise AuthenticationFailed("The account of this API key is inactive.")
        api_key_mark_used(api_key=api_key, now=now)
        request._request.auth_method = "api_key"
        request._request.api_key_id = api_key.pk
        return api_key.user, api_key

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="api"'

    @staticmethod
    def _presented_key(request: Request) -> str | None:
        header = request.META.get(API_KEY_HEADER)
        if header is not None:
            return header.strip()
        parts = get_authorization_header(request).split()
        if len(parts) == 2 and parts[0].lower() == b"bearer":
            value = parts[1].decode("latin-1")
            if looks_like_key(value):
                return value
        return None


class JWTAuthentication(SimpleJWTAuthentication):
    def authenticate(self, request: Request) -> tuple[Any, Any] | None:
        result = super().authenticate(request)
        if result is not None:
            request._request.auth_method = "jwt"
        return result
