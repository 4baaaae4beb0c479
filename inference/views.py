"""The model registry and prediction endpoints: validate, call one service, render."""

from __future__ import annotations

from typing import Any

from django.http import HttpResponse
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.permissions import IsStaff, authenticated_user
from analytics.serializers import PeriodSerializer
from inference import fast_path, rollouts, selectors
from inference.idempotency import idempotent
from inference.models import ALIAS_PATTERN, MODEL_NAME_PATTERN, MODEL_OR_ALIAS_PATTERN, alias_validator
from inference.rollout_compare import rollout_compare
from inference.rollout_serializers import (
    ActivateSerializer,
    ActiveVersionSerializer,
    AliasSerializer,
    ModelChangeSerializer,
    RolloutCompareSerializer,
    RolloutSerializer,
    RolloutSetSerializer,
    VersionSerializer,
)
from inference.serializers import (
    ModelSerializer,
    PredictionCreateSerializer,
    PredictionDetailSerializer,
    PredictionFilterSerializer,
    PredictionSerializer,
    PredictionSummarySerializer,
    prediction_detail_representation,
)
from inference.services import ShapeChange, model_switch, rollout_description
from project.errors import Conflict
from project.pagination import NewestFirstPagination, NumberedPagination
from project.schema import CONFLICT_RESPONSES, ERROR_RESPONSES, IDEMPOTENCY_RESPONSES, body_required

# The documented examples: the demo models' (python manage.py train_demo_models).
_IRIS_ROW = [5.1, 3.5, 1.4, 0.2]
_IRIS_NAMES = ["sepal length (cm)", "sepal width (cm)", "petal length (cm)", "petal width (cm)"]
_NAME_PARAMETER = OpenApiParameter(
    "name", str, OpenApiParameter.PATH, pattern=MODEL_NAME_PATTERN, examples=[OpenApiExample("iris", value="iris")]
)
_ALIAS_PARAMETER = OpenApiParameter(
    "alias",
    str,
    OpenApiParameter.PATH,
    pattern=ALIAS_PATTERN,
    examples=[OpenApiExample("production", value="production")],
)


_STAFF = [IsAuthenticated, IsStaff]


class AliasNameSerializer(serializers.Serializer):
    alias = serializers.CharField(max_length=50, validators=[alias_validator])


@extend_schema_view(
    list=extend_schema(
        summary="List models (their active versions)", responses={200: ModelSerializer, **ERROR_RESPONSES}
    ),
    retrieve=extend_schema(
        summary="One model by name, or by name@alias (the version the alias points at)",
        parameters=[
            OpenApiParameter(
                "name",
                str,
                OpenApiParameter.PATH,
                pattern=MODEL_OR_ALIAS_PATTERN,
                examples=[OpenApiExample("iris", value="iris")],
            )
        ],
        responses={200: ModelSerializer, **ERROR_RESPONSES},
    ),
)
class ModelViewSet(viewsets.GenericViewSet):
    serializer_class = ModelSerializer
    pagination_class = NumberedPagination
    lookup_field = "name"
    lookup_value_regex = r"[^/]+"

    def list(self, request: Request) -> Response:
        page = self.paginate_queryset(selectors.model_list()) or []  # None only without pagination_class
        versions = selectors.model_versions_by_name(names=[m.name for m in page])
        return self.get_paginated_response(ModelSerializer(page, many=True, context={"versions": versions}).data)

    def retrieve(self, request: Request, name: str) -> Response:
        model = selectors.model_version_named(model=name)  # a name, or name@alias
        versions = selectors.model_versions_by_name(names=[model.name])
        return Response(ModelSerializer(model, context={"versions": versions}).data)

    # --- roll-outs (staff) ------------------------------------------------------------------

    @extend_schema(
        summary="A model's aliases",
        parameters=[_NAME_PARAMETER],
        responses={200: AliasSerializer(many=True), **ERROR_RESPONSES},
    )
    @action(detail=True, methods=["get"], url_path="aliases", pagination_class=None)
    def aliases(self, request: Request, name: str) -> Response:
        selectors.model_version_get(name=name)  # 404 for an unknown model
        return Response(AliasSerializer(selectors.alias_list(name=name), many=True).data)

    @extend_schema(
        methods=["PUT"],
        summary="Point an alias (name@alias) at a version (staff; audited)",
        request=VersionSerializer,
        parameters=[_NAME_PARAMETER, _ALIAS_PARAMETER],
        responses={200: AliasSerializer, **ERROR_RESPONSES},
    )
    @extend_schema(
        methods=["DELETE"],
        summary="Remove an alias (staff; audited)",
        parameters=[_NAME_PARAMETER, _ALIAS_PARAMETER],
        responses={204: None, **ERROR_RESPONSES},
    )
    @action(
        detail=True,
        methods=["put", "delete"],
        url_path=r"aliases/(?P<alias>[^/]+)",
        permission_classes=_STAFF,
    )
    def alias(self, request: Request, name: str, alias: str) -> Response:
        if request.method == "DELETE":
            rollouts.alias_delete(name=name, alias=alias, by=authenticated_user(request), via="api")
            return Response(status=status.HTTP_204_NO_CONTENT)
        AliasNameSerializer(data={"alias": alias}).is_valid(raise_exception=True)
        params = VersionSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        found = rollouts.alias_set(
            name=name, alias=alias, version=params.validated_data["version"], by=authenticated_user(request), via="api"
        )
        return Response(AliasSerializer(found).data)

    @extend_schema(
        methods=["GET"],
        summary="A model's roll-out (staff)",
        parameters=[_NAME_PARAMETER],
        responses={200: RolloutSerializer, **ERROR_RESPONSES},
    )
    @extend_schema(
        methods=["PUT"],
        summary="Start or change a roll-out: a canary taking a share of default requests, a shadow (staff)",
        request=RolloutSetSerializer,
        parameters=[_NAME_PARAMETER],
        examples=[
            OpenApiExample(
                "Canary and shadow",
                value={"canary": {"version": 2, "percent": 10}, "shadow": {"version": 3}},
                request_only=True,
            )
        ],
        responses={200: RolloutSerializer, **ERROR_RESPONSES},
    )
    @extend_schema(
        methods=["DELETE"],
        summary="End the roll-out (staff)",
        parameters=[_NAME_PARAMETER],
        responses={204: None, **ERROR_RESPONSES},
    )
    @action(detail=True, methods=["get", "put", "delete"], url_path="rollout", permission_classes=_STAFF)
    def rollout(self, request: Request, name: str) -> Response:
        user = authenticated_user(request)
        if request.method == "DELETE":
            rollouts.rollout_end(name=name, by=user, via="api")
            return Response(status=status.HTTP_204_NO_CONTENT)
        if request.method == "PUT":
            params = RolloutSetSerializer(data=request.data)
            params.is_valid(raise_exception=True)
            canary, shadow = params.validated_data.get("canary"), params.validated_data.get("shadow")
            rollouts.rollout_set(
                name=name,
                canary_version=canary["version"] if canary else None,
                canary_percent=canary["percent"] if canary else 0.0,
                shadow_version=shadow["version"] if shadow else None,
                by=user,
                via="api",
            )
        return Response(_rollout_representation(name))

    @extend_schema(
        summary="Each version compared on real traffic: requests, errors, latency, shadow agreement (staff)",
        parameters=[_NAME_PARAMETER, PeriodSerializer],
        responses={200: RolloutCompareSerializer, **ERROR_RESPONSES},
    )
    @action(detail=True, methods=["get"], url_path="rollout/compare", permission_classes=_STAFF)
    def compare(self, request: Request, name: str) -> Response:
        params = PeriodSerializer(data=request.query_params)
        params.is_valid(raise_exception=True)
        return Response(rollout_compare(name=name, period=params.validated_data["period"]))

    @extend_schema(
        summary="Put back the version that was active before the current one (staff; audited)",
        request=None,
        parameters=[_NAME_PARAMETER],
        responses={200: ActiveVersionSerializer, **ERROR_RESPONSES, **CONFLICT_RESPONSES},
    )
    @action(detail=True, methods=["post"], permission_classes=_STAFF)
    def rollback(self, request: Request, name: str) -> Response:
        switch = rollouts.model_rollback(name=name, by=authenticated_user(request), via="api")
        return Response({"name": name, "version": switch.active.version, "previous": switch.previous})

    @extend_schema(
        summary="Make a version the active one, e.g. to promote a canary (staff; audited)",
        request=ActivateSerializer,
        parameters=[_NAME_PARAMETER],
        examples=[OpenApiExample("Promote version 1", value={"version": 1}, request_only=True)],
        responses={200: ActiveVersionSerializer, **ERROR_RESPONSES, **CONFLICT_RESPONSES},
    )
    @action(detail=True, methods=["post"], permission_classes=_STAFF)
    def activate(self, request: Request, name: str) -> Response:
        params = ActivateSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        try:
            switch = model_switch(
                name=name,
                version=params.validated_data["version"],
                allow_new_shape=params.validated_data["allow_new_shape"],
                by=authenticated_user(request),
                via="api",
            )
        except ShapeChange as exc:
            raise Conflict(f"{exc}; send allow_new_shape: true if that is meant.") from None
        return Response({"name": name, "version": switch.active.version, "previous": switch.previous})

    @extend_schema(
        summary="The audit of a model's aliases, activations, rollbacks and roll-outs, newest first (staff)",
        parameters=[_NAME_PARAMETER],
        responses={200: ModelChangeSerializer(many=True), **ERROR_RESPONSES},
    )
    @action(detail=True, methods=["get"], permission_classes=_STAFF, pagination_class=None)
    def changes(self, request: Request, name: str) -> Response:
        selectors.model_version_get(name=name)
        return Response(ModelChangeSerializer(selectors.model_changes(name=name), many=True).data)


def _rollout_representation(name: str) -> dict[str, Any]:
    selectors.model_version_get(name=name)  # 404 for an unknown model
    found = selectors.rollout_get(name=name)
    if found is None:
        return {"name": name, "canary": None, "shadow": None, "started_by": None, "started_at": None}
    return {
        "name": name,
        **rollout_description(found),
        "started_by": found.started_by.username if found.started_by else None,
        "started_at": found.started_at,
    }


@extend_schema_view(
    create=extend_schema(
        summary="Run a model on one row or a batch, and store the prediction",
        description="400 also when a row does not fit the model: its length is not the model's n_features, its "
        "names are not the model's feature_names, or its values are outside what the model can compute.",
        request=PredictionCreateSerializer,
        examples=[
            OpenApiExample("One row", value={"model": "iris", "features": _IRIS_ROW}, request_only=True),
            OpenApiExample(
                "One row, by feature name",
                value={"model": "iris", "features": dict(zip(_IRIS_NAMES, _IRIS_ROW, strict=True))},
                request_only=True,
            ),
            OpenApiExample(
                "A batch", value={"model": "iris", "instances": [_IRIS_ROW, [6.7, 3.0, 5.2, 2.3]]}, request_only=True
            ),
        ],
        responses={201: PredictionSerializer, **ERROR_RESPONSES, **IDEMPOTENCY_RESPONSES},
    ),
    list=extend_schema(
        summary="Your predictions, newest first (staff: everyone's)",
        parameters=[PredictionFilterSerializer],
        responses={200: PredictionSummarySerializer, **ERROR_RESPONSES},
    ),
    retrieve=extend_schema(
        summary="One of your predictions", responses={200: PredictionDetailSerializer, **ERROR_RESPONSES}
    ),
)
class PredictionViewSet(viewsets.GenericViewSet):
    serializer_class = PredictionSerializer
    pagination_class = NewestFirstPagination
    lookup_value_regex = r"\d+"

    def _creating(self) -> bool:
        # The OpenAPI generator documents the stock classes: they take the same credentials.
        if self.request is None or getattr(self, "swagger_fake_view", False):
            return False
        return self.action_map.get((self.request.method or "").lower()) == "create"

    def get_authenticators(self) -> list[Any]:
        # Creating is the one route with its own authentication and throttle (inference/fast_path.py).
        return [fast_path.PredictionAuthentication()] if self._creating() else super().get_authenticators()

    def get_throttles(self) -> list[Any]:
        return [fast_path.PredictionThrottle()] if self._creating() else super().get_throttles()

    @body_required
    @idempotent(lease_setting="IDEMPOTENCY_LEASE_SECONDS")
    def create(self, request: Request) -> HttpResponse:
        return fast_path.prediction_create(request)

    def list(self, request: Request) -> Response:
        filters = PredictionFilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        page = self.paginate_queryset(
            selectors.prediction_list(user=authenticated_user(request), **filters.validated_data)
        )
        summaries = PredictionSummarySerializer(page, many=True, context={"request": request})
        return self.get_paginated_response(summaries.data)

    def retrieve(self, request: Request, pk: str) -> Response:
        prediction = selectors.prediction_get(user=authenticated_user(request), pk=int(pk))
        return Response(prediction_detail_representation(prediction))
