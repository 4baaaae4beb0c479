"""The model registry and prediction endpoints: validate, call one service, render."""

from __future__ import annotations

from typing import Any

from django.http import HttpResponse
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import viewsets
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.permissions import authenticated_user
from inference import fast_path, selectors
from inference.idempotency import idempotent
from inference.models import MODEL_NAME_PATTERN
from inference.serializers import (
    ModelSerializer,
    PredictionCreateSerializer,
    PredictionDetailSerializer,
    PredictionFilterSerializer,
    PredictionSerializer,
    PredictionSummarySerializer,
    prediction_detail_representation,
)
from project.pagination import NewestFirstPagination, NumberedPagination
from project.schema import ERROR_RESPONSES, IDEMPOTENCY_RESPONSES, body_required

# The documented examples: the demo models' (python manage.py train_demo_models).
_IRIS_ROW = [5.1, 3.5, 1.4, 0.2]
_IRIS_NAMES = ["sepal length (cm)", "sepal width (cm)", "petal length (cm)", "petal width (cm)"]


@extend_schema_view(
    list=extend_schema(
        summary="List models (their active versions)", responses={200: ModelSerializer, **ERROR_RESPONSES}
    ),
    retrieve=extend_schema(
        summary="One model by name",
        parameters=[
            OpenApiParameter(
                "name",
                str,
                OpenApiParameter.PATH,
                pattern=MODEL_NAME_PATTERN,
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
        model = selectors.model_version_get(name=name)
        versions = selectors.model_versions_by_name(names=[name])
        return Response(ModelSerializer(model, context={"versions": versions}).data)


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
