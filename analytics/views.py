"""The analytics API: summary and usage series. Validate, call one selector, render."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.permissions import authenticated_user
from analytics import selectors
from analytics.renderers import UsageCSVRenderer
from analytics.serializers import PeriodSerializer, SummarySerializer, UsageParamsSerializer, UsageSeriesSerializer
from project.json import JSONRenderer
from project.schema import ERROR_RESPONSES


class SummaryView(APIView):
    @extend_schema(
        summary="Usage totals for a period (staff: everyone; others: their own)",
        parameters=[PeriodSerializer],
        responses={200: SummarySerializer, **ERROR_RESPONSES},
    )
    def get(self, request: Request) -> Response:
        params = PeriodSerializer(data=request.query_params)
        params.is_valid(raise_exception=True)
        summary = selectors.usage_summary(user=authenticated_user(request), period=params.validated_data["period"])
        return Response(summary)


class UsageView(APIView):
    renderer_classes = [JSONRenderer, UsageCSVRenderer]

    @extend_schema(
        summary="Usage, tokens and cost over time, by hour, day or month, optionally grouped (?format=csv for CSV)",
        parameters=[UsageParamsSerializer],
        responses={200: UsageSeriesSerializer, **ERROR_RESPONSES},
    )
    def get(self, request: Request) -> Response:
        params = UsageParamsSerializer(data=request.query_params)
        params.is_valid(raise_exception=True)
        data = params.validated_data
        period = data["period"]
        series = selectors.usage_series(
            user=authenticated_user(request), period=period, interval=data["interval"], group_by=data.get("group_by")
        )
        body = {
            "interval": data["interval"],
            "currency": settings.LLM_PRICE_CURRENCY,
            "group_by": data.get("group_by"),
            "start": period.start,
            "end": period.end,
            "series": series,
        }
        # Rendered as built: a DRF serializer costs ~50 µs per point, and a series has thousands.
        return Response(body)

    def finalize_response(self, request: Request, response: Response, *args: Any, **kwargs: Any) -> Response:
        # Errors keep the one JSON error shape, even when CSV was asked for.
        if response.status_code >= 400:
            request.accepted_renderer = JSONRenderer()
            request.accepted_media_type = JSONRenderer.media_type
        return super().finalize_response(request, response, *args, **kwargs)
