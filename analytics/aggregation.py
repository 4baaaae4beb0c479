"""Keeping the hourly usage rollups current, from the raw request log.

A run recomputes whole hours from the raw rows — from an hour before where the last run got
to, up to a moment ago — and swaps them in within one transaction that also moves
`aggregated_until`. Recomputing instead of adding makes a second run harmless (it writes the
same numbers) and a crash harmless (the transaction rolls back), and it picks up rows that land
late: a row carries its request's start time but is written when the request ends, up to
LATE_WINDOW later. Runs are serialized by a row lock on the one AggregationState row.

Nothing here is on the request path: a request only inserts its log row.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from django.db import connection, transaction
from django.db.models import Count, Min, Q, Sum
from django.db.models.functions import TruncDay, TruncHour
from django.utils import timezone

from analytics.histogram import BINS, FIELDS, packed_sql
from analytics.models import AggregationState, Dimension, Granularity, RequestLog, UsageRollup

logger = logging.getLogger(__name__)

LATE_WINDOW = timedelta(hours=1)  # the longest a request (a stream) may run and still be counted in place
LAG = timedelta(seconds=2)  # rows of requests this recent may not be committed yet
_CHUNK = timedelta(hours=24)  # recompute this much at a time, to bound memory

EVERYONE = 0


class AggregationError(Exception):
    pass


@dataclass
class Totals:
    requests: int = 0
    errors: int = 0
    server_errors: int = 0
    latency_sum_ms: float = 0.0
    rows: int = 0
    predictions: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    unpriced_tokens: int = 0
    # Counts per latency bin: a list, or a row of the numpy array a rollup query was read into.
    histogram: list[int] | np.ndarray = field(default_factory=lambda: [0] * BINS)

    METRICS = (
        "requests",
        "errors",
        "server_errors",
        "latency_sum_ms",
        "rows",
        "predictions",
        "prompt_tokens",
        "completion_tokens",
        "cost",
        "unpriced_tokens",
    )
    FLOATS = ("latency_sum_ms", "cost")

    def add(self, other: Totals) -> None:
        for name in self.METRICS:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.histogram = [a + b for a, b in zip(self.histogram, other.histogram, strict=True)]


def endpoint_label(method: str, endpoint: str) -> str:
    return f"{method} {endpoint or '-'}"


def _dimension_values(row: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    yield Dimension.TOTAL, ""
    yield Dimension.ENDPOINT, endpoint_label(row["method"], row["endpoint"])
    if row["model"]:
        yield Dimension.MODEL, row["model"]
    yield Dimension.API_KEY, str(row["api_key_id"] or "")
    yield Dimension.STATUS, str(row["status"])


def raw_groups(
    *, start: datetime, end: datetime, user_id: int | None = None, few: bool = False
) -> Iterable[Mapping[str, Any]]:
    """The raw log in [start, end) grouped as finely as any rollup needs, counted in SQL.

    Streamed in chunks (a server-side cursor on PostgreSQL: three round trips more), unless
    `few`: the minutes since the last aggregation, which an analytics answer adds, fit in one."""
    query = RequestLog.objects.filter(created_at__gte=start, created_at__lt=end)
    if user_id is not None:
        query = query.filter(user_id=user_id)
    grouped = (
        query.annotate(hour=TruncHour("created_at"))
        .values("hour", "method", "endpoint", "model", "user_id", "api_key_id", "status", "latency_bin")
        .annotate(
            n=Count("id"),
            latency=Sum("latency_ms"),
            rows_sum=Sum("rows"),
            predictions=Count("id", filter=Q(rows__gt=0)),
            pt=Sum("prompt_tokens"),
            ct=Sum("completion_tokens"),
            cost_sum=Sum("cost"),
            unpriced=Sum("unpriced_tokens"),
        )
        .order_by()
    )
    return list(grouped) if few else grouped.iterator(chunk_size=10_000)


def fold(groups: Iterable[Mapping[str, Any]], *, scopes: str = "all") -> dict[tuple, Totals]:
    """Totals per (hour, scope user, dimension, value), from raw_groups rows.

    scopes="all" makes both the everyone rows and each user's own; "user" only the latter.
    Used for the few minutes of rows newer than the rollups, and to aggregate on databases
    other than PostgreSQL (which does it in SQL, see _aggregate_in_postgres).
    """
    totals: dict[tuple, Totals] = {}
    for row in groups:
        n, status, hour, user_id = row["n"], row["status"], row["hour"], row["user_id"]
        targets = []
        if scopes == "all":
            targets += [(hour, EVERYONE, dim, value) for dim, value in _dimension_values(row)]
            targets.append((hour, EVERYONE, Dimension.USER, str(user_id or "")))
        if user_id:
            targets += [(hour, user_id, dim, value) for dim, value in _dimension_values(row)]
        for key in targets:
            t = totals.get(key)
            if t is None:
                t = totals[key] = Totals()
            t.requests += n
            if status >= 400:
                t.errors += n
                if status >= 500:
                    t.server_errors += n
            t.latency_sum_ms += row["latency"] or 0.0
            t.rows += row["rows_sum"] or 0
            t.predictions += row["predictions"]
            t.prompt_tokens += row["pt"] or 0
            t.completion_tokens += row["ct"] or 0
            t.cost += row["cost_sum"] or 0.0
            t.unpriced_tokens += row["unpriced"] or 0
            t.histogram[row["latency_bin"]] += n
    return totals


def _rollup(key: tuple, totals: Totals) -> UsageRollup:
    hour, scope, dimension, value = key
    fields = {name: getattr(totals, name) for name in Totals.METRICS}
    fields.update(zip(FIELDS, totals.histogram, strict=True))
    return UsageRollup(
        granularity=Granularity.HOUR, bucket=hour, scope_user_id=scope, dimension=dimension, value=value, **fields
    )


# The raw log grouped as finely as any rollup needs; every rollup is then summed from it.
_BASE_SQL = """
CREATE TEMP TABLE usage_base AS
SELECT date_trunc('hour', created_at) AS hour, user_id, model, api_key_id, status, latency_bin,
       method || ' ' || coalesce(nullif(endpoint, ''), '-') AS endpoint,
       count(*) AS n, sum(latency_ms) AS latency, sum(rows) AS rows,
       count(*) FILTER (WHERE rows > 0) AS predictions,
       sum(prompt_tokens) AS prompt_tokens, sum(completion_tokens) AS completion_tokens,
       sum(cost) AS cost, sum(unpriced_tokens) AS unpriced_tokens
FROM analytics_requestlog
WHERE created_at >= %s AND created_at < %s
GROUP BY 1, 2, 3, 4, 5, 6, 7
"""
_ROLLUP_COLUMNS = ", ".join(
    ["granularity", "bucket", "scope_user_id", "dimension", "value", *Totals.METRICS, *FIELDS, "bins"]
)
_BIN_SUMS = [f"coalesce(sum(n) FILTER (WHERE latency_bin = {index}), 0)" for index in range(BINS)]
# The bins once more, packed: PostgreSQL computes identical aggregates of one query once.
_ROLLUP_SUMS = ", ".join(
    [
        "sum(n)",
        "coalesce(sum(n) FILTER (WHERE status >= 400), 0)",
        "coalesce(sum(n) FILTER (WHERE status >= 500), 0)",
        "sum(latency)",
        "sum(rows)",
        "sum(predictions)",
        "sum(prompt_tokens)",
        "sum(completion_tokens)",
        "sum(cost)",
        "sum(unpriced_tokens)",
        *_BIN_SUMS,
        packed_sql(_BIN_SUMS),
    ]
)
# (scope, dimension, value expression, extra condition) for each kind of rollup row.
_ROLLUPS = [
    ("0", Dimension.TOTAL, "''", "TRUE"),
    ("0", Dimension.ENDPOINT, "endpoint", "TRUE"),
    ("0", Dimension.MODEL, "model", "model <> ''"),
    ("0", Dimension.API_KEY, "coalesce(api_key_id::text, '')", "TRUE"),
    ("0", Dimension.STATUS, "status::text", "TRUE"),
    ("0", Dimension.USER, "coalesce(user_id::text, '')", "TRUE"),
    ("user_id", Dimension.TOTAL, "''", "user_id IS NOT NULL"),
    ("user_id", Dimension.ENDPOINT, "endpoint", "user_id IS NOT NULL"),
    ("user_id", Dimension.MODEL, "model", "user_id IS NOT NULL AND model <> ''"),
    ("user_id", Dimension.API_KEY, "coalesce(api_key_id::text, '')", "user_id IS NOT NULL"),
    ("user_id", Dimension.STATUS, "status::text", "user_id IS NOT NULL"),
]


def _aggregate_in_postgres(start: datetime, end: datetime) -> int:
    """One scan of the raw rows into a grouped temporary table, then each rollup summed from it."""
    written = 0
    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE IF EXISTS usage_base")
        cursor.execute(_BASE_SQL, [start, end])
        for scope, dimension, value, condition in _ROLLUPS:
            cursor.execute(
                f"INSERT INTO analytics_usagerollup ({_ROLLUP_COLUMNS}) "  # noqa: S608 - constants only
                f"SELECT 'hour', hour, {scope}, %s, {value}, {_ROLLUP_SUMS} FROM usage_base WHERE {condition} "
                "GROUP BY 2, 3, 5",
                [str(dimension)],
            )
            written += cursor.rowcount
        cursor.execute("DROP TABLE usage_base")
    return written


def _days_from_hours(start: datetime) -> int:
    """Recompute the day rollups from `start` (a midnight) on, by adding up their hour rollups."""
    UsageRollup.objects.filter(granularity=Granularity.DAY, bucket__gte=start).delete()
    days = (
        UsageRollup.objects.filter(granularity=Granularity.HOUR, bucket__gte=start)
        .annotate(day=TruncDay("bucket"))
        .values("day", "scope_user_id", "dimension", "value")
        .annotate(**{f"{name}_sum": Sum(name) for name in (*Totals.METRICS, *FIELDS)})
        .order_by()
    )
    if connection.vendor == "postgresql":  # in the database, without a round trip per row
        sql, params = days.query.sql_with_params()
        with connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO analytics_usagerollup ({_ROLLUP_COLUMNS}) "  # noqa: S608 - generated by the ORM
                f"SELECT 'day', day, scope_user_id, dimension, value, "
                f"{', '.join(f'{name}_sum' for name in (*Totals.METRICS, *FIELDS))}, "
                f"{packed_sql([f'{name}_sum' for name in FIELDS])} FROM ({sql}) AS days",
                params,
            )
            return cursor.rowcount
    rollups = [
        UsageRollup(
            granularity=Granularity.DAY,
            bucket=row["day"],
            scope_user_id=row["scope_user_id"],
            dimension=row["dimension"],
            value=row["value"],
            **_summed(row),
        )
        for row in days
    ]
    UsageRollup.objects.bulk_create(rollups, batch_size=2000)
    return len(rollups)


def _summed(row: Mapping[str, Any]) -> dict[str, Any]:
    """A day row's metric and histogram columns, from the `<name>_sum` values of its hours."""
    return {name: row[f"{name}_sum"] for name in (*Totals.METRICS, *FIELDS)}


def _floor_hour(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


def floor_day(moment: datetime) -> datetime:
    return moment.replace(hour=0, minute=0, second=0, microsecond=0)


@dataclass(frozen=True)
class AggregationRun:
    start: datetime
    until: datetime
    rollups: int


def usage_aggregate(*, since: datetime | None = None, now: datetime | None = None) -> AggregationRun:
    """Recompute the rollups from `since` (default: an hour before the last run's end) to now."""
    cutoff = (now or timezone.now()) - LAG
    AggregationState.objects.get_or_create(pk=1)
    with transaction.atomic():
        state = AggregationState.objects.select_for_update().get(pk=1)
        if since is None:
            if state.aggregated_until is not None:
                since = min(state.aggregated_until, cutoff) - LATE_WINDOW
            else:
                since = RequestLog.objects.aggregate(first=Min("created_at"))["first"] or cutoff
        start = _floor_hour(since)
        if state.purged_before is not None and start < state.purged_before:
            raise AggregationError(
                f"raw rows before {state.purged_before:%Y-%m-%d %H:%M} were purged; "
                "rollups from before then cannot be recomputed"
            )
        UsageRollup.objects.filter(granularity=Granularity.HOUR, bucket__gte=start).delete()
        written = 0
        chunk_start = start
        while chunk_start < cutoff:
            chunk_end = min(chunk_start + _CHUNK, cutoff)
            if connection.vendor == "postgresql":
                written += _aggregate_in_postgres(chunk_start, chunk_end)
            else:
                rollups = [_rollup(k, t) for k, t in fold(raw_groups(start=chunk_start, end=chunk_end)).items()]
                UsageRollup.objects.bulk_create(rollups, batch_size=2000)
                written += len(rollups)
            chunk_start = chunk_end
        written += _days_from_hours(floor_day(start))
        state.aggregated_until = cutoff
        state.save(update_fields=["aggregated_until", "updated_at"])
    logger.info("usage rollups recomputed from %s to %s: %d rows", start, cutoff, written)
    return AggregationRun(start=start, until=cutoff, rollups=written)


def request_logs_purge(*, older_than: timedelta, now: datetime | None = None, batch: int = 50_000) -> int:
    """Delete raw rows older than `older_than`, but never rows the rollups might still need."""
    state, _ = AggregationState.objects.get_or_create(pk=1)
    limit = (now or timezone.now()) - older_than
    if state.aggregated_until is None:
        raise AggregationError("nothing is aggregated yet: run aggregate_usage before purging")
    # Rows within LATE_WINDOW of the last run may still be recomputed: keep them.
    limit = _floor_hour(min(limit, state.aggregated_until - LATE_WINDOW))
    deleted = 0
    while True:
        ids = list(RequestLog.objects.filter(created_at__lt=limit).values_list("id", flat=True)[:batch])
        if not ids:
            break
        deleted += RequestLog.objects.filter(id__in=ids).delete()[0]
    with transaction.atomic():
        state = AggregationState.objects.select_for_update().get(pk=1)
        if state.purged_before is None or state.purged_before < limit:
            state.purged_before = limit
            state.save(update_fields=["purged_before", "updated_at"])
    return deleted
