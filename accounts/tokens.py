"""Refresh tokens that can be revoked.

simplejwt's own blacklist app stores every issued refresh token in full, which would put a
usable credential in the database. This keeps only the ids of revoked tokens instead.
"""

from __future__ import annotations

from datetime import UTC, datetime

from rest_framework_simplejwt.exceptions import TokenError
from rest_framework_simplejwt.settings import api_settings
from rest_framework_simplejwt.tokens import RefreshToken

from accounts.models import RevokedToken


class RevocableRefreshToken(RefreshToken):
    def verify(self, *args: object, **kwargs: object) -> None:
        super().verify(*args, **kwargs)
        if RevokedToken.objects.filter(jti=self.payload[api_settings.JTI_CLAIM]).exists():
            raise TokenError("Token is blacklisted")

    # Our own row, not simplejwt's BlacklistedToken (its blacklist app is not installed); no caller
    # uses what this returns.
    def blacklist(self) -> RevokedToken:  # type: ignore[override]
        expires_at = datetime.fromtimestamp(self.payload["exp"], tz=UTC)
        revoked, _ = RevokedToken.objects.get_or_create(
            jti=self.payload[api_settings.JTI_CLAIM], defaults={"expires_at": expires_at}
        )
        return revoked
