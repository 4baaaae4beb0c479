"""How a request proves who it comes from: an API key here, or a JWT access token (simplejwt's
own JWTAuthentication, listed after this class in DEFAULT_AUTHENTICATION_CLASSES).

The prediction route authenticates with its own classes (inference/fast_path.py), from the
worker's copies of these rows; every other route reads them here, once per request.
"""

from __future__ import annotations

from typing import Any

from django.utils import timezone
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.request import Request

from accounts.keys import key_matches, key_prefix, looks_like_key
from accounts.models import ApiKey
from accounts.services import api_key_mark_used

API_KEY_HEADER = "HTTP_X_API_KEY"


def presented_key(request: Request) -> str | None:
    """The API key a request carries: `X-API-Key`, or `Authorization: Bearer <key>` (what the
    OpenAI SDKs send). A Bearer value without the key's start is a JWT: not ours."""
    header = request.META.get(API_KEY_HEADER)
    if header is not None:
        return header.strip()
    parts = get_authorization_header(request).split()
    if len(parts) == 2 and parts[0].lower() == b"bearer":
        value = parts[1].decode("latin-1")
        if looks_like_key(value):
            return value
    return None


def check_key(api_key: ApiKey | None, key: str, *, now: Any) -> ApiKey:
    """`api_key` if it is the row of `key` and may be used now; else AuthenticationFailed."""
    if api_key is None or not key_matches(key, api_key.key_hash):
        raise AuthenticationFailed("Invalid API key.")
    if not api_key.is_usable(now=now):
        raise AuthenticationFailed("This API key is revoked or expired.")
    if not api_key.user.is_active:
        raise AuthenticationFailed("The account of this API key is inactive.")
    return api_key


class ApiKeyAuthentication(BaseAuthentication):
    """`X-API-Key: <key>`, or `Authorization: Bearer <key>` for the OpenAI SDKs."""

    def authenticate(self, request: Request) -> tuple[Any, ApiKey] | None:
        key = presented_key(request)
        if key is None:
            return None
        prefix = key_prefix(key)
        found = ApiKey.objects.select_related("user").filter(prefix=prefix).first() if prefix else None
        now = timezone.now()
        api_key = check_key(found, key, now=now)
        api_key_mark_used(api_key=api_key, now=now)
        return api_key.user, api_key

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="api"'
