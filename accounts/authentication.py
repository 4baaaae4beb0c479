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
from rest_framework_simplejwt.exceptions import InvalidToken
from rest_framework_simplejwt.settings import api_settings
from rest_framework_simplejwt.tokens import Token
from rest_framework_simplejwt.utils import get_md5_hash_password

from accounts.auth_cache import api_key_current, api_key_last_seen, user_current
from accounts.keys import looks_like_key
from accounts.models import ApiKey
from accounts.services import api_key_mark_used
from accounts.throttles import count_ahead
from project import freshness

API_KEY_HEADER = "HTTP_X_API_KEY"


class ApiKeyAuthentication(BaseAuthentication):
    """`X-API-Key: <key>`, or `Authorization: Bearer <key>` for the OpenAI SDKs.

    A Bearer value without the key start is left to the JWT class. The key row comes from this
    worker's copy while the `auth` freshness stamp says it is current, so a revocation holds
    from the very next request in every worker without a query per request.
    """

    def authenticate(self, request: Request) -> tuple[Any, ApiKey] | None:
        key = self._presented_key(request)
        if key is None:
            return None
        last_seen = api_key_last_seen(key=key)
        if last_seen is not None:  # who to count is known: count now, stamps in the same round trip
            count_ahead(request, api_key=last_seen)
        api_key = api_key_current(key=key, stamps=freshness.stamps_for(request))
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
    """simplejwt's checks (active user, token not revoked by a password change) on this worker's
    copy of the user, kept current by the `auth` freshness stamp instead of a query per request."""

    def get_user(self, validated_token: Token) -> Any:
        try:
            user_id = validated_token[api_settings.USER_ID_CLAIM]
        except KeyError as exc:
            raise InvalidToken("Token contained no recognizable user identification") from exc
        count_ahead(self._request, user_pk=user_id)
        user = user_current(pk=user_id, stamps=freshness.stamps_for(self._request))
        if user is None:
            raise AuthenticationFailed("User not found", code="user_not_found")
        if api_settings.CHECK_USER_IS_ACTIVE and not user.is_active:
            raise AuthenticationFailed("User is inactive", code="user_inactive")
        if api_settings.CHECK_REVOKE_TOKEN and validated_token.get(
            api_settings.REVOKE_TOKEN_CLAIM
        ) != get_md5_hash_password(user.password):
            raise AuthenticationFailed("The user's password has been changed.", code="password_changed")
        return user

    def authenticate(self, request: Request) -> tuple[Any, Any] | None:
        self._request = request  # for get_user, which simplejwt calls without it
        result = super().authenticate(request)
        if result is not None:
            request._request.auth_method = "jwt"
        return result
