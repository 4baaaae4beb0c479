"""The token routes (obtain, refresh, log out) and API key management."""

from collections.abc import Sequence
from typing import Any

from drf_spectacular.utils import OpenApiExample, extend_schema, extend_schema_view
from rest_framework import status, viewsets
from rest_framework.decorators import action
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import BaseThrottle
from rest_framework_simplejwt import views as jwt

from accounts import selectors, services
from accounts.login_guard import login_attempt
from accounts.permissions import IsStaff, NotWithApiKey, authenticated_user
from accounts.serializers import (
    ApiKeyCreatedSerializer,
    ApiKeyCreateSerializer,
    ApiKeyDetailSerializer,
    ApiKeyLimitsSerializer,
    ApiKeySerializer,
    LogoutResponseSerializer,
    TokenPairResponseSerializer,
    TokenRefreshResponseSerializer,
    limits_as_fields,
)
from accounts.throttles import LoginRateThrottle
from project.http import client_ip, refuse_idempotency_key
from project.pagination import NewestFirstPagination
from project.schema import ERROR_RESPONSES


class _TokenRoute:
    """Token routes are limited per client address and username, not per user."""

    throttle_classes: Sequence[type[BaseThrottle]] = (LoginRateThrottle,)


@extend_schema(tags=["auth"], responses={200: TokenPairResponseSerializer, **ERROR_RESPONSES})
class TokenObtainView(_TokenRoute, jwt.TokenObtainPairView):
    """Exchange a username and password for an access and a refresh token."""

    def post(self, request: Request, *args: object, **kwargs: object) -> Response:
        username = request.data.get("username") if isinstance(request.data, dict) else None
        if not isinstance(username, str) or not username:
            return super().post(request, *args, **kwargs)  # no password is judged: the serializer's 400
        with login_attempt(username=username, address=client_ip(request._request) or "unknown"):
            return super().post(request, *args, **kwargs)


@extend_schema(tags=["auth"], responses={200: TokenRefreshResponseSerializer, **ERROR_RESPONSES})
class TokenRefreshView(_TokenRoute, jwt.TokenRefreshView):
    """Exchange a refresh token for a new access token (and a new refresh token when rotating)."""


class LogoutView(_TokenRoute, jwt.TokenBlacklistView):
    """Revoke a refresh token: it is refused from then on."""

    @extend_schema(tags=["auth"], responses={200: LogoutResponseSerializer, **ERROR_RESPONSES})
    def post(self, request: Request, *args: object, **kwargs: object) -> Response:
        super().post(request, *args, **kwargs)
        return Response({"detail": "Logged out: the refresh token is revoked."}, status=status.HTTP_200_OK)


@extend_schema_view(
    create=extend_schema(
        summary="Make an API key (staff). The full key is in this answer only.",
        description="400 also when the user does not exist or is inactive, when only a superuser may make keys for "
        "them (staff), when expires_at is not in the future, or with an Idempotency-Key (not supported here).",
        request=ApiKeyCreateSerializer,
        examples=[
            OpenApiExample(
                "A key for alice", value={"user": "alice", "name": "nightly batch", "rate": "100/m"}, request_only=True
            ),
        ],
        responses={201: ApiKeyCreatedSerializer, **ERROR_RESPONSES},
    ),
    list=extend_schema(
        summary="API keys: staff see all, others their own", responses={200: ApiKeySerializer, **ERROR_RESPONSES}
    ),
    retrieve=extend_schema(
        summary="One API key, with what it has spent of its token budget",
        responses={200: ApiKeyDetailSerializer, **ERROR_RESPONSES},
    ),
    partial_update=extend_schema(
        summary="Change a key's limits (staff): rate, token budget, tokens per minute, parallel generations",
        request=ApiKeyLimitsSerializer,
        examples=[
            OpenApiExample(
                "A daily budget",
                value={
                    "token_budget": {"tokens": 100000, "period": "day"},
                    "tokens_per_minute": 20000,
                    "max_parallel": 4,
                },
                request_only=True,
            )
        ],
        responses={200: ApiKeyDetailSerializer, **ERROR_RESPONSES},
    ),
    revoke=extend_schema(
        summary="Revoke an API key (staff): refused from the next request on",
        request=None,
        responses={200: ApiKeySerializer, **ERROR_RESPONSES},
    ),
)
class ApiKeyViewSet(viewsets.GenericViewSet):
    serializer_class = ApiKeySerializer
    pagination_class = NewestFirstPagination
    lookup_value_regex = r"\d+"

    def get_permissions(self) -> Sequence[Any]:
        if self.action in ("create", "revoke", "partial_update"):
            return [IsAuthenticated(), IsStaff(), NotWithApiKey()]
        return super().get_permissions()

    def create(self, request: Request) -> Response:
        refuse_idempotency_key(request)
        params = ApiKeyCreateSerializer(data=request.data, context={"creator": authenticated_user(request)})
        params.is_valid(raise_exception=True)
        data = params.validated_data
        limits = limits_as_fields(data)
        created = services.api_key_create(
            created_by=authenticated_user(request),
            user=data["user"],
            name=data["name"],
            expires_at=data.get("expires_at"),
            **limits,
        )
        body = {"key": created.key, **ApiKeySerializer(created.api_key).data}
        return Response(body, status=status.HTTP_201_CREATED)

    def list(self, request: Request) -> Response:
        page = self.paginate_queryset(selectors.api_key_list(user=authenticated_user(request)))
        return self.get_paginated_response(ApiKeySerializer(page, many=True).data)

    def retrieve(self, request: Request, pk: str) -> Response:
        api_key = selectors.api_key_get(user=authenticated_user(request), pk=int(pk))
        return Response(ApiKeyDetailSerializer(api_key).data)

    def partial_update(self, request: Request, pk: str) -> Response:
        params = ApiKeyLimitsSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        api_key = selectors.api_key_get(user=authenticated_user(request), pk=int(pk))
        api_key = services.api_key_limits_set(api_key=api_key, **limits_as_fields(params.validated_data))
        return Response(ApiKeyDetailSerializer(api_key).data)

    @action(detail=True, methods=["post"])
    def revoke(self, request: Request, pk: str) -> Response:
        api_key = services.api_key_revoke(api_key=selectors.api_key_get(user=authenticated_user(request), pk=int(pk)))
        return Response(ApiKeySerializer(api_key).data)
