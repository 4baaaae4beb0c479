from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from rest_framework import serializers
from rest_framework_simplejwt import serializers as jwt
from rest_framework_simplejwt.exceptions import AuthenticationFailed
from rest_framework_simplejwt.settings import api_settings

from accounts.tokens import RevocableRefreshToken


class TokenObtainPairSerializer(jwt.TokenObtainPairSerializer):
    token_class = RevocableRefreshToken


class TokenRefreshSerializer(jwt.TokenRefreshSerializer):
    token_class = RevocableRefreshToken

    def validate(self, attrs: dict[str, Any]) -> dict[str, str]:
        # simplejwt looks the user up with .get() and answers a deleted user with a 500.
        refresh = self.token_class(attrs["refresh"])
        user_id = refresh.payload.get(api_settings.USER_ID_CLAIM)
        User = get_user_model()
        if not User.objects.filter(**{api_settings.USER_ID_FIELD: user_id}, is_active=True).exists():
            raise AuthenticationFailed("No active account found for the given token.", "no_active_account")
        return super().validate(attrs)


class TokenBlacklistSerializer(jwt.TokenBlacklistSerializer):
    token_class = RevocableRefreshToken


class TokenPairResponseSerializer(serializers.Serializer):
    access = serializers.CharField()
    refresh = serializers.CharField()


class TokenRefreshResponseSerializer(serializers.Serializer):
    access = serializers.CharField()
    refresh = serializers.CharField(required=False, help_text="Present when refresh tokens rotate.")


class LogoutResponseSerializer(serializers.Serializer):
    detail = serializers.CharField()
