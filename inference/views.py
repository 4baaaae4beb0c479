"""The model registry and prediction endpoints: validate, call one service, render."""

from __future__ import annotations

from django.conf import settings
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import status, viewsets
from rest_framework.request import Request
from rest_framework.response import Response

from analytics.recording import note_usage, store_with_request_log
from inference import selectors, services
from inference.idempotency import idempotent
from inference.serializers import (
    ModelSerializer,
    ModelTargetSerializer,
    PredictionCreateSerializer,
    PredictionDetailSerializer,
    PredictionFilterSerializer,
    PredictionSerializer,
    PredictionSummarySerializer,
    prediction_detail_representation,
    prediction_representation,
)
from project import freshness
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

    @idempotent(lease_setting="IDEMPOTENCY_LEASE_SECONDS")
    def create(self, request: Request) -> Response:
        # The model first, so that a request refused for its rows still counts against its model.
        target = ModelTargetSerializer(data=request.data)
        target.is_valid(raise_exception=True)
        model_version = selectors.model_version_current(
            name=target.validated_data.get("model") or settings.DEFAULT_MODEL,
            version=target.validated_data.get("version"),
            stamps=freshness.stamps_for(request),
        )
        note_usage(request, model=model_version.name)
        params = PredictionCreateSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        data = params.validated_data
        prediction = services.prediction_create(
            user=request.user,
            model_version=model_version,
            features=data.get("features"),
            instances=data.get("instances"),
            store=store_with_request_log(request),
        )
        note_usage(request, model=prediction.model_name, rows=prediction.n_rows)
        return Response(prediction_representation(prediction), status=status.HTTP_201_CREATED)

    def list(self, request: Request) -> Response:
        filters = PredictionFilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        page = self.paginate_queryset(selectors.prediction_list(user=request.user, **filters.validated_data))
        summaries = PredictionSummarySerializer(page, many=True, context={"request": request})
        return self.get_paginated_response(summaries.data)

    def retrieve(self, request: Request, pk: str) -> Response:
        prediction = selectors.prediction_get(user=request.user, pk=int(pk))
        return Response(prediction_detail_representation(prediction))
