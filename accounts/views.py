"""The token routes: obtain, refresh and log out (revoke the refresh token)."""

from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework_simplejwt import views as jwt

from accounts.serializers import (
    LogoutResponseSerializer,
    TokenPairResponseSerializer,
    TokenRefreshResponseSerializer,
)
from project.schema import ERROR_RESPONSES


@extend_schema(tags=["auth"], responses={200: TokenPairResponseSerializer, **ERROR_RESPONSES})
class TokenObtainView(jwt.TokenObtainPairView):
    """Exchange a username and password for an access and a refresh token."""


@extend_schema(tags=["auth"], responses={200: TokenRefreshResponseSerializer, **ERROR_RESPONSES})
class TokenRefreshView(jwt.TokenRefreshView):
    """Exchange a refresh token for a new access token (and a new refresh token when rotating)."""


class LogoutView(jwt.TokenBlacklistView):
    """Revoke a refresh token: it is refused from then on."""

    @extend_schema(tags=["auth"], responses={200: LogoutResponseSerializer, **ERROR_RESPONSES})
    def post(self, request: Request, *args: object, **kwargs: object) -> Response:
        super().post(request, *args, **kwargs)
        return Response({"detail": "Logged out: the refresh token is revoked."}, status=status.HTTP_200_OK)
