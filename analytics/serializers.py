from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone
from rest_framework import serializers

from analytics.models import Dimension
from analytics.selectors import Period
from project.fields import QueryChoiceField, QueryDateTimeField

GROUPS = [Dimension.ENDPOINT, Dimension.MODEL, Dimension.USER, Dimension.API_KEY, Dimension.STATUS]


def _floor_hour(moment: Any) -> Any:
    return moment.replace(minute=0, second=0, microsecond=0)


def _floor_day(moment: Any) -> Any:
    return moment.replace(hour=0, minute=0, second=0, microsecond=0)


def _months_back(moment: datetime, months: int) -> datetime:
    """The first of the month `months` calendar months before `moment`'s, at midnight."""
    index = moment.year * 12 + moment.month - 1 - months
    return moment.replace(year=index // 12, month=index % 12 + 1, day=1, hour=0, minute=0, second=0, microsecond=0)


# The moments a period may start and end within: a day inside what Python's datetime can hold,
# so that widening a period to whole hours and days can never step outside it (OverflowError).
EARLIEST = datetime(1, 1, 2, tzinfo=UTC)
LATEST = datetime(9999, 12, 30, tzinfo=UTC)


def _within_bounds(name: str, moment: datetime) -> None:
    if not EARLIEST <= moment <= LATEST:
        raise serializers.ValidationError(
            {name: [f"Must be between {EARLIEST.date().isoformat()} and {LATEST.date().isoformat()} (UTC)."]}
        )


class PeriodSerializer(serializers.Serializer):
    """start and end (ISO 8601), widened to whole hours: the rollups' resolution."""

    start = QueryDateTimeField(
        required=False,
        help_text="Default: 30 days before end (a day for hourly). Not after end; at most "
        "ANALYTICS_MAX_DAYS (400 by default) before it; from 0001-01-02 to 9999-12-30.",
    )
    end = QueryDateTimeField(required=False, help_text="Default: now.")

    default_span = timedelta(days=30)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        for name in ("start", "end"):
            if name in attrs:
                _within_bounds(name, attrs[name])
        end = attrs.get("end") or timezone.now()
        # By default whole days (midnight UTC), which the day rollups answer directly.
        if "start" in attrs:
            start = attrs["start"]
        elif end - EARLIEST < self.default_span_for(attrs):
            raise serializers.ValidationError({"end": ["Too early for the default period; give a start too."]})
        elif attrs.get("interval") == "month":
            start = _months_back(end, 11)  # this month and the eleven before it
        else:
            start = _floor_day(end - self.default_span_for(attrs))
        if start > end:  # equal is an empty period (or, within an hour, that hour)
            raise serializers.ValidationError({"start": ["Must not be after end."]})
        if end - start > timedelta(days=settings.ANALYTICS_MAX_DAYS):
            raise serializers.ValidationError({"start": [f"At most {settings.ANALYTICS_MAX_DAYS} days per query."]})
        ceil_end = _floor_hour(end) + (timedelta(hours=1) if end != _floor_hour(end) else timedelta())
        attrs["period"] = Period(start=_floor_hour(start), end=ceil_end)
        return attrs

    def default_span_for(self, attrs: dict[str, Any]) -> timedelta:
        return self.default_span


class UsageParamsSerializer(PeriodSerializer):
    interval = QueryChoiceField(
        choices=["hour", "day", "month"],
        default="day",
        help_text="Hourly buckets cover at most ANALYTICS_MAX_HOURLY_DAYS (14 by default); months are calendar "
        "months (UTC), and by default the period is the last twelve of them.",
    )
    group_by = QueryChoiceField(choices=GROUPS, required=False)
    # DRF's own: read before the view (an unknown format is a 404); here so that `?format=` is a 400.
    format = QueryChoiceField(choices=["json", "csv"], required=False, help_text="csv: the series as CSV.")

    def default_span_for(self, attrs: dict[str, Any]) -> timedelta:
        if attrs.get("interval") == "hour":
            return timedelta(days=1)
        if attrs.get("interval") == "month":
            return timedelta(days=366)  # at most what twelve calendar months take (_months_back)
        return self.default_span

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        attrs = super().validate(attrs)
        period = attrs["period"]
        limit = settings.ANALYTICS_MAX_HOURLY_DAYS
        if attrs["interval"] == "hour" and period.end - period.start > timedelta(days=limit):
            raise serializers.ValidationError(
                {"interval": [f"Hourly buckets cover at most {limit} days; use interval=day for longer periods."]}
            )
        return attrs


class LatencySerializer(serializers.Serializer):
    p50 = serializers.FloatField(allow_null=True)
    p95 = serializers.FloatField(allow_null=True)
    p99 = serializers.FloatField(allow_null=True)
    mean = serializers.FloatField(allow_null=True)


class TokensSerializer(serializers.Serializer):
    prompt = serializers.IntegerField()
    completion = serializers.IntegerField()
    total = serializers.IntegerField()


class CostSerializer(serializers.Serializer):
    amount = serializers.FloatField(help_text="Estimated, at the price table's prices when each call was recorded.")
    currency = serializers.CharField()
    unpriced_tokens = serializers.IntegerField(help_text="Tokens of models the price table has no price for.")


class EndpointUsageSerializer(serializers.Serializer):
    endpoint = serializers.CharField()
    requests = serializers.IntegerField()
    errors = serializers.IntegerField()  # type: ignore[assignment]  # a field, not Serializer.errors
    error_rate = serializers.FloatField()
    p95_ms = serializers.FloatField(allow_null=True)


class ModelUsageSerializer(serializers.Serializer):
    model = serializers.CharField()
    requests = serializers.IntegerField()
    predictions = serializers.IntegerField()
    rows = serializers.IntegerField()
    errors = serializers.IntegerField()  # type: ignore[assignment]  # a field, not Serializer.errors
    p95_ms = serializers.FloatField(allow_null=True)
    tokens = serializers.IntegerField()
    cost = serializers.FloatField()


class UserUsageSerializer(serializers.Serializer):
    user_id = serializers.IntegerField()
    username = serializers.CharField()
    requests = serializers.IntegerField()
    errors = serializers.IntegerField()  # type: ignore[assignment]  # a field, not Serializer.errors
    tokens = serializers.IntegerField()
    cost = serializers.FloatField()


class SummarySerializer(serializers.Serializer):
    start = serializers.DateTimeField()
    end = serializers.DateTimeField()
    requests = serializers.IntegerField()
    errors = serializers.IntegerField(help_text="Answers with status 400 and up.")  # type: ignore[assignment]
    server_errors = serializers.IntegerField(help_text="Answers with status 500 and up.")
    error_rate = serializers.FloatField()
    latency_ms = LatencySerializer()
    predictions = serializers.IntegerField()
    rows = serializers.IntegerField()
    tokens = TokensSerializer()
    cost = CostSerializer()
    by_endpoint = EndpointUsageSerializer(many=True)
    by_model = ModelUsageSerializer(many=True)
    top_users = UserUsageSerializer(many=True)
    aggregated_until = serializers.DateTimeField(allow_null=True)


class SeriesPointSerializer(serializers.Serializer):
    bucket = serializers.DateTimeField()
    group = serializers.CharField()
    requests = serializers.IntegerField()
    errors = serializers.IntegerField()  # type: ignore[assignment]  # a field, not Serializer.errors
    p50_ms = serializers.FloatField(allow_null=True)
    p95_ms = serializers.FloatField(allow_null=True)
    p99_ms = serializers.FloatField(allow_null=True)
    rows = serializers.IntegerField()
    predictions = serializers.IntegerField()
    tokens = serializers.IntegerField()
    prompt_tokens = serializers.IntegerField()
    completion_tokens = serializers.IntegerField()
    cost = serializers.FloatField(help_text="Estimated cost of the tokens, in LLM_PRICE_CURRENCY.")
    unpriced_tokens = serializers.IntegerField(help_text="Tokens of models the price table has no price for.")


class UsageSeriesSerializer(serializers.Serializer):
    interval = serializers.CharField()
    currency = serializers.CharField(help_text="The currency of every point's cost.")
    group_by = serializers.CharField(allow_null=True)
    start = serializers.DateTimeField()
    end = serializers.DateTimeField()
    series = SeriesPointSerializer(many=True)
