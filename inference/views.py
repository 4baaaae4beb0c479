"""The model registry and prediction endpoints: validate, call one service, render."""

from __future__ import annotations

from typing import Any

from django.http import HttpResponse
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import viewsets
from rest_framework.request import Request
from rest_framework.response import Response

from inference import fast_path, selectors
from inference.idempotency import idempotent
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
from project.schema import ERROR_RESPONSES


@extend_schema_view(
    list=extend_schema(
        summary="List models (their active versions)", responses={200: ModelSerializer, **ERROR_RESPONSES}
    ),
    retrieve=extend_schema(summary="One model by name", responses={200: ModelSerializer, **ERROR_RESPONSES}),
)
class ModelViewSet(viewsets.GenericViewSet):
    serializer_class = ModelSerializer
    pagination_class = NumberedPagination
    lookup_field = "name"
    lookup_value_regex = r"[^/]+"

    def list(self, request: Request) -> Response:
        page = self.paginate_queryset(selectors.model_list())
        versions = selectors.model_versions_by_name(names=[m.name for m in page])
        return self.get_paginated_response(ModelSerializer(page, many=True, context={"versions": versions}).data)

    def retrieve(self, request: Request, name: str) -> Response:
        model = selectors.model_version_get(name=name)
        versions = selectors.model_versions_by_name(names=[name])
        return Response(ModelSerializer(model, context={"versions": versions}).data)


@extend_schema_view(
    create=extend_schema(
        summary="Run a model on one row or a batch, and store the prediction",
        request=PredictionCreateSerializer,
        responses={201: PredictionSerializer, **ERROR_RESPONSES},
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
        return self.action_map.get(self.request.method.lower()) == "create"

    def get_authenticators(self) -> list[Any]:
        # Creating is the one route with its own authentication and throttle (inference/fast_path.py).
        return [fast_path.PredictionAuthentication()] if self._creating() else super().get_authenticators()

    def get_throttles(self) -> list[Any]:
        return [fast_path.PredictionThrottle()] if self._creating() else super().get_throttles()

    @idempotent(lease_setting="IDEMPOTENCY_LEASE_SECONDS")
    def create(self, request: Request) -> HttpResponse:
        return fast_path.prediction_create(request)

    def list(self, request: Request) -> Response:
        filters = PredictionFilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        page = self.paginate_queryset(selectors.prediction_list(user=request.user, **filters.validated_data))
        summaries = PredictionSummarySerializer(page, many=True, context={"request": request})
        return self.get_paginated_response(summaries.data)

    def retrieve(self, request: Request, pk: str) -> Response:
        prediction = selectors.prediction_get(user=request.user, pk=int(pk))
        return Response(prediction_detail_representation(prediction))
