from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.utils import timezone
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework_simplejwt import serializers as jwt
from rest_framework_simplejwt.exceptions import AuthenticationFailed
from rest_framework_simplejwt.settings import api_settings

from accounts.models import ApiKey
from accounts.policies import key_owner_refusal
from accounts.ratelimits import rate_is_valid
from accounts.spend import UNREADABLE, spend_of
from accounts.tokens import RevocableRefreshToken
from project.fields import StrictCharField, StrictIntegerField
from project.schema import NO_NUL


class TokenObtainPairSerializer(jwt.TokenObtainPairSerializer):
    token_class = RevocableRefreshToken

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # simplejwt's CharField would turn {"username": 12345} into "12345": a login that the
        # failure limits (keyed on the string sent) would never see. A username is a string.
        self.fields[self.username_field] = StrictCharField(write_only=True)


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


# --- API keys -------------------------------------------------------------------------


@extend_schema_field(
    {
        "oneOf": [
            {"type": "integer", "minimum": 1},
            {"type": "string", "minLength": 1, "pattern": NO_NUL},
        ],
        "example": "alice",
    }
)
class UserReferenceField(serializers.Field):
    """A user given by id (a number) or by username (a string)."""

    default_error_messages = {
        "unknown": "No active user {value!r}.",
        "invalid": "Expected a user id or a username.",
    }

    def to_internal_value(self, data: Any) -> Any:
        User = get_user_model()
        if isinstance(data, bool) or not isinstance(data, (int, str)) or data == "":
            self.fail("invalid")
        if isinstance(data, int):
            if not 0 < data < 2**63:
                self.fail("unknown", value=data)
            user = User.objects.filter(pk=data, is_active=True).first()
        else:
            user = User.objects.filter(username=data, is_active=True).first()
        if user is None:
            self.fail("unknown", value=data)
        return user

    def to_representation(self, value: Any) -> Any:
        return value.pk


class TokenBudgetSerializer(serializers.Serializer):
    tokens = StrictIntegerField(min_value=1, max_value=2**62, help_text="Prompt and completion tokens per period.")
    period = serializers.ChoiceField(choices=["day", "month"], help_text="A UTC day or month.")


class ApiKeyLimitsSerializer(serializers.Serializer):
    """A key's limits, settable when it is made and afterwards (PATCH, staff); null removes a limit
    (the rate: an empty string)."""

    rate = StrictCharField(
        required=False, allow_blank=True, max_length=20, help_text='Its own rate limit, e.g. "100/m" or "10/s".'
    )
    token_budget = TokenBudgetSerializer(required=False, allow_null=True)
    tokens_per_minute = StrictIntegerField(required=False, allow_null=True, min_value=1, max_value=2**31 - 1)
    max_parallel = StrictIntegerField(
        required=False, allow_null=True, min_value=1, max_value=10_000, help_text="Generations open at once."
    )

    def validate_rate(self, value: str) -> str:
        if value and not rate_is_valid(value):
            raise serializers.ValidationError('Expected a rate like "100/m": a count, "/", then s, m, h or d.')
        return value


def limits_as_fields(data: dict[str, Any]) -> dict[str, Any]:
    """The model's fields for validated limits (only those given)."""
    fields: dict[str, Any] = {
        name: data[name] for name in ("rate", "tokens_per_minute", "max_parallel") if name in data
    }
    if "token_budget" in data:
        budget = data["token_budget"]
        fields["token_budget_tokens"] = budget["tokens"] if budget else None
        fields["token_budget_period"] = budget["period"] if budget else ""
    return fields


class ApiKeyCreateSerializer(ApiKeyLimitsSerializer):
    user = UserReferenceField(help_text="The key's owner: a user id or username.")
    name = StrictCharField(max_length=100)
    expires_at = serializers.DateTimeField(required=False, allow_null=True)

    def validate_user(self, value: Any) -> Any:
        if (refusal := key_owner_refusal(creator=self.context.get("creator"), owner=value)) is not None:
            raise serializers.ValidationError(refusal)
        return value

    def validate_expires_at(self, value: Any) -> Any:
        if value is not None and value <= timezone.now():
            raise serializers.ValidationError("Must be in the future.")
        return value


class ApiKeySerializer(serializers.ModelSerializer):
    user = serializers.IntegerField(source="user_id")
    username = serializers.CharField(source="user.username")
    revoked = serializers.BooleanField()
    token_budget = serializers.SerializerMethodField()

    @extend_schema_field(TokenBudgetSerializer(allow_null=True))
    def get_token_budget(self, api_key: ApiKey) -> dict[str, Any] | None:
        if api_key.token_budget_tokens is None:
            return None
        return {"tokens": api_key.token_budget_tokens, "period": api_key.token_budget_period}

    class Meta:
        model = ApiKey
        fields = [
            "id",
            "prefix",
            "name",
            "user",
            "username",
            "rate",
            "token_budget",
            "tokens_per_minute",
            "max_parallel",
            "created_at",
            "expires_at",
            "revoked",
            "revoked_at",
            "last_used_at",
        ]
        read_only_fields = fields


class ApiKeyCreatedSerializer(ApiKeySerializer):
    key = serializers.CharField(help_text="The full key. Shown this once: it is not stored and cannot be shown again.")

    class Meta(ApiKeySerializer.Meta):
        fields = ["key", *ApiKeySerializer.Meta.fields]
        read_only_fields = fields


class SpendSerializer(serializers.Serializer):
    period = serializers.CharField()
    period_start = serializers.DateTimeField()
    period_end = serializers.DateTimeField()
    budget = serializers.IntegerField()
    used = serializers.IntegerField(help_text="Tokens used this period, calls in flight at their worst case.")
    remaining = serializers.IntegerField()


class ApiKeyDetailSerializer(ApiKeySerializer):
    """One key, with what it has spent of its token budget this period (null without a budget)."""

    spend = serializers.SerializerMethodField()

    class Meta(ApiKeySerializer.Meta):
        fields = [*ApiKeySerializer.Meta.fields, "spend"]
        read_only_fields = fields

    @extend_schema_field(SpendSerializer(allow_null=True))
    def get_spend(self, api_key: ApiKey) -> dict[str, Any] | None:
        try:
            found = spend_of(api_key)
        except UNREADABLE:  # the key is still shown (a PATCH was still saved)
            return None
        return None if found is None else SpendSerializer(found).data
