"""Reads for the analytics API and the dashboard: rollups, plus the raw rows of the last moments.

Staff read the everyone rows (scope 0); anyone else reads only their own (scope = their id), so
no grouping can show them another user's numbers. Rows newer than the last aggregation run are
counted from the raw log (a minute or so of rows), so the answer includes the latest requests.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any, TypedDict

import numpy as np
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from django.db import connection
from django.db.models import BigIntegerField, BinaryField, F, FloatField, Func, Sum
from django.db.models.functions import Cast, Trunc
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from accounts.models import ApiKey
from analytics.aggregation import EVERYONE, Totals, floor_day, fold, raw_groups
from analytics.histogram import FIELDS, PACKED_SQL, percentiles, percentiles_many, unpack
from analytics.models import AggregationState, Dimension, Granularity, UsageRollup

# Counts summed as bigint: PostgreSQL sums bigint as numeric, which the driver makes a Decimal,
# and a usage series reads some 90,000 of them.
_SUMS = {
    name: Cast(Sum(name), FloatField() if name in Totals.FLOATS else BigIntegerField())
    for name in (*Totals.METRICS, *FIELDS)
}


@dataclass(frozen=True)
class Period:
    start: datetime
    end: datetime


def _scope(user: User) -> int:
    return EVERYONE if user.is_staff else user.pk


def _aggregated_until() -> datetime | None:
    return AggregationState.objects.filter(pk=1).values_list("aggregated_until", flat=True).first()


def _rollup_spans(
    start: datetime, end: datetime, interval: str | None, *, ends_at_aggregation: bool
) -> list[tuple[str, datetime, datetime]]:
    """Which rollups cover [start, end): day rows for whole days, hour rows for the edges
    (and hour rows only when the answer is by the hour). When `end` is where aggregation got
    to, today's day row already covers today up to it."""
    if interval == "hour":
        return [(Granularity.HOUR, start, end)]
    first_day = floor_day(start) + (timedelta(days=1) if start != floor_day(start) else timedelta())
    last_day = floor_day(end)
    if ends_at_aggregation and end != last_day:
        last_day, end = last_day + timedelta(days=1), last_day + timedelta(days=1)
    if first_day >= last_day:
        return [(Granularity.HOUR, start, end)]
    spans: list[tuple[str, datetime, datetime]] = [(Granularity.DAY, first_day, last_day)]
    if start < first_day:
        spans.append((Granularity.HOUR, start, first_day))
    if last_day < end:
        spans.append((Granularity.HOUR, last_day, end))
    return spans


class _Sentinels(TypedDict):
    scope: int
    start: datetime
    end: datetime
    granularity: str


# Sentinels: the rollup query is built by the ORM once per interval, then run with real values
# in their place. Building a query with 68 SUMs costs the ORM ~5 ms each time.
_SENTINELS: _Sentinels = {
    "scope": -918_273_645,
    "start": datetime(1901, 1, 1, tzinfo=UTC),
    "end": datetime(1902, 1, 1, tzinfo=UTC),
    "granularity": "__granularity__",
}


class _PackedBins(Func):
    """A row's bins packed (analytics.histogram.PACKED_SQL): as aggregation stored them, else
    packed now (a row written before they were stored)."""

    template = f"coalesce(%(expressions)s, {PACKED_SQL})"
    output_field = BinaryField()


@cache
def _rollup_sql(
    interval: str | None, dimensions: tuple[str, ...], *, grouped: bool, packed: bool = False
) -> tuple[str, tuple[Any, ...]]:
    """The rollup query: summed per (dimension, value[, interval period]) when `grouped`, else
    the rows as they are (each already one period: day rows for a series by day), with no
    sorting and summing for PostgreSQL to do; `packed`: with the bins as one value (_PackedBins)."""
    query = UsageRollup.objects.filter(
        scope_user_id=_SENTINELS["scope"],
        dimension__in=dimensions,
        granularity=_SENTINELS["granularity"],
        bucket__gte=_SENTINELS["start"],
        bucket__lt=_SENTINELS["end"],
    )
    if not grouped:
        bins: dict[str, Any] = {"packed": _PackedBins(F("bins"))} if packed else {}
        fields = Totals.METRICS if packed else (*Totals.METRICS, *FIELDS)
        query = query.values("dimension", "value", *fields, period=F("bucket"), **bins)
        return query.order_by().query.sql_with_params()
    keys = ["dimension", "value"]
    if interval:
        query = query.annotate(period=Trunc("bucket", interval))
        keys.append("period")
    sql, params = query.values(*keys).annotate(**_SUMS).order_by().query.sql_with_params()
    return sql, params


def _prepared(value: Any) -> Any:
    """A value as the database driver receives it (SQLite gets datetimes as text)."""
    if isinstance(value, datetime):
        return UsageRollup._meta.get_field("bucket").get_db_prep_value(value, connection)
    return value


def _aware(moment: Any) -> datetime:
    if isinstance(moment, str):
        moment = parse_datetime(moment)
    return moment if timezone.is_aware(moment) else timezone.make_aware(moment, UTC)


def _binary_results() -> bool:
    """Whether the connection's cursors can fetch binary results: psycopg's server-side binding
    ones can (the pool's setting, project/settings); its client-side ones cannot."""
    return connection.vendor == "postgresql" and bool(connection.settings_dict["OPTIONS"].get("server_side_binding"))


def _rollup_rows(
    *, scope: int, dimensions: tuple[str, ...], granularity: str, start: datetime, end: datetime, interval: str | None
) -> list[tuple[str, tuple[datetime | None, str], Totals]]:
    """(dimension, (period or None, value), totals) for each row of the rollup query."""
    binary = _binary_results()
    sql, template = _rollup_sql(interval, dimensions, grouped=interval != granularity, packed=binary)
    actual = {
        _prepared(_SENTINELS["scope"]): scope,
        _prepared(_SENTINELS["start"]): _prepared(start),
        _prepared(_SENTINELS["end"]): _prepared(end),
        _prepared(_SENTINELS["granularity"]): granularity,
    }
    params = [actual.get(p, p) if isinstance(p, (int, str, datetime)) else p for p in template]
    with connection.cursor() as cursor:
        if binary:
            # Binary results: a series is some 90,000 numbers, and as text PostgreSQL spends half of
            # the query's time writing them and the driver as long again reading them back. The
            # driver's own cursor takes the option; Django's errors are kept around it.
            with connection.wrap_database_errors:
                cursor.cursor.execute(sql, params, binary=True)
        else:
            cursor.execute(sql, params)
        columns = [column[0] for column in cursor.description]
        rows = cursor.fetchall()
    first_metric = columns.index(Totals.METRICS[0])
    end_metric = first_metric + len(Totals.METRICS)
    # Totals takes the metrics in the order the query has them: _SUMS's and values()'s.
    assert columns[first_metric:end_metric] == list(Totals.METRICS)  # noqa: S101
    dimension_at, value_at = columns.index("dimension"), columns.index("value")
    period_at = columns.index("period") if interval else None
    first = rows[0][period_at] if rows and period_at is not None else None
    if period_at is not None and rows and not (isinstance(first, datetime) and timezone.is_aware(first)):
        # SQLite's dates are text, and a truncated period (a UTC timestamp) comes back naive:
        # all of a query's rows alike, so the first says whether any needs it.
        rows = [(*row[:period_at], _aware(row[period_at]), *row[period_at + 1 :]) for row in rows]
    histograms: Any
    if "packed" in columns:
        bins_at = columns.index("packed")
        histograms = unpack([row[bins_at] for row in rows])
    else:
        first_bin = columns.index(FIELDS[0])
        assert columns[first_bin : first_bin + len(FIELDS)] == list(FIELDS)  # noqa: S101
        histograms = [list(row[first_bin : first_bin + len(FIELDS)]) for row in rows]
    # One row per point of a series (thousands): built positionally, the per-row cost that counts.
    found = [
        (
            row[dimension_at],
            (None if period_at is None else row[period_at], row[value_at]),
            # mypy cannot count a slice's items: METRICS's, then the histogram (asserted above)
            Totals(*row[first_metric:end_metric], histogram),  # type: ignore[call-arg]
        )
        for row, histogram in zip(rows, histograms, strict=True)
    ]
    return found


Grouped = dict[str, dict[tuple[datetime | None, str], Totals]]


def _totals(
    *, scope: int, dimensions: tuple[str, ...], period: Period, interval: str | None, until: datetime | None
) -> Grouped:
    """Totals per dimension, per (interval bucket or None, value): from the rollups up to
    `until` (where aggregation got to), and from the raw log after it."""
    result: Grouped = {dimension: defaultdict(Totals) for dimension in dimensions}
    rollup_end = period.end if until is None else min(period.end, until)
    if until is not None and rollup_end > period.start:
        spans = _rollup_spans(period.start, rollup_end, interval, ends_at_aggregation=rollup_end == until)
        for granularity, start, end in spans:
            for dimension, key, totals in _rollup_rows(
                scope=scope, dimensions=dimensions, granularity=granularity, start=start, end=end, interval=interval
            ):
                groups = result[dimension]
                if key in groups:
                    groups[key].add(totals)
                else:
                    groups[key] = totals
    tail_start = period.start if until is None else max(period.start, until)
    if tail_start < period.end:
        recent = raw_groups(start=tail_start, end=period.end, user_id=None if scope == EVERYONE else scope, few=True)
        for (hour, row_scope, dimension, value), totals in fold(
            recent, scopes="all" if scope == EVERYONE else "user"
        ).items():
            if row_scope == scope and dimension in result:
                bucket = _truncate(hour, interval) if interval else None
                result[dimension][(bucket, value)].add(totals)
    return result


def _truncate(moment: datetime, interval: str) -> datetime:
    moment = moment.replace(minute=0, second=0, microsecond=0)
    if interval == "month":
        return moment.replace(day=1, hour=0)
    return moment.replace(hour=0) if interval == "day" else moment


def _latency(totals: Totals) -> dict[str, float | None]:
    p50, p95, p99 = percentiles(totals.histogram, (0.50, 0.95, 0.99))
    return {"p50": p50, "p95": p95, "p99": p99}


def _cost(totals: Totals) -> float:
    return _costs([totals])[0]


def _costs(totals: list[Totals]) -> list[float]:
    """The totals' costs, rounded: enough places for a single token of the cheapest model (0.02
    per 1M), and numpy's rounding for one as for many, so that a summary and a series agree."""
    return np.round(np.array([t.cost for t in totals], dtype=np.float64), 9).tolist() if totals else []


def _rate(part: int, whole: int) -> float:
    return round(part / whole, 6) if whole else 0.0


def _labels(dimension: str, values: list[str]) -> dict[str, str]:
    """Readable names for user and key ids (usernames, key prefixes)."""
    ids = [int(v) for v in values if v.isdigit()]
    if dimension == Dimension.USER:
        names = dict(get_user_model().objects.filter(pk__in=ids).values_list("pk", "username"))
        return {v: names.get(int(v), f"deleted user {v}") if v else "anonymous" for v in values}
    if dimension == Dimension.API_KEY:
        keys = {
            pk: f"{name} ({prefix})"
            for pk, name, prefix in ApiKey.objects.filter(pk__in=ids).values_list("pk", "name", "prefix")
        }
        return {v: keys.get(int(v), f"key {v}") if v else "no key" for v in values}
    return {v: v for v in values}


def usage_summary(*, user: User, period: Period, top: int = 10) -> dict[str, Any]:
    scope = _scope(user)
    until = _aggregated_until()
    dimensions: tuple[str, ...] = (Dimension.TOTAL, Dimension.ENDPOINT, Dimension.MODEL)
    if scope == EVERYONE:
        dimensions += (Dimension.USER,)
    grouped = _totals(scope=scope, dimensions=dimensions, period=period, interval=None, until=until)

    def by(dimension: str) -> list[tuple[str, Totals]]:
        return sorted(((value, t) for (_, value), t in grouped[dimension].items()), key=lambda item: -item[1].requests)

    total = next((t for _, t in by(Dimension.TOTAL)), Totals())
    if scope == EVERYONE:
        users = [(v, t) for v, t in by(Dimension.USER) if v][:top]
    else:
        users = [(str(user.pk), total)] if total.requests else []
    names = _labels(Dimension.USER, [v for v, _ in users])
    return {
        "start": period.start,
        "end": period.end,
        "requests": total.requests,
        "errors": total.errors,
        "server_errors": total.server_errors,
        "error_rate": _rate(total.errors, total.requests),
        "latency_ms": {
            **_latency(total),
            "mean": round(total.latency_sum_ms / total.requests, 3) if total.requests else None,
        },
        "predictions": total.predictions,
        "rows": total.rows,
        "tokens": {
            "prompt": total.prompt_tokens,
            "completion": total.completion_tokens,
            "total": total.prompt_tokens + total.completion_tokens,
        },
        "cost": {
            "amount": _cost(total),
            "currency": settings.LLM_PRICE_CURRENCY,
            "unpriced_tokens": total.unpriced_tokens,
        },
        "by_endpoint": [
            {
                "endpoint": value,
                "requests": t.requests,
                "errors": t.errors,
                "error_rate": _rate(t.errors, t.requests),
                "p95_ms": _latency(t)["p95"],
            }
            for value, t in by(Dimension.ENDPOINT)
        ],
        "by_model": [
            {
                "model": value,
                "requests": t.requests,
                "predictions": t.predictions,
                "rows": t.rows,
                "errors": t.errors,
                "p95_ms": _latency(t)["p95"],
                "tokens": t.prompt_tokens + t.completion_tokens,
                "cost": _cost(t),
            }
            for value, t in by(Dimension.MODEL)
        ],
        "top_users": [
            {
                "user_id": int(value),
                "username": names[value],
                "requests": t.requests,
                "errors": t.errors,
                "tokens": t.prompt_tokens + t.completion_tokens,
                "cost": _cost(t),
            }
            for value, t in users
        ],
        "aggregated_until": until,
    }


def usage_series(*, user: User, period: Period, interval: str, group_by: str | None) -> list[dict[str, Any]]:
    scope = _scope(user)
    until = _aggregated_until()
    dimension = group_by or Dimension.TOTAL
    if scope != EVERYONE and dimension == Dimension.USER:
        # A user's own numbers are the user dimension's only group they may see.
        totals = _totals(scope=scope, dimensions=(Dimension.TOTAL,), period=period, interval=interval, until=until)
        grouped = {(bucket, str(user.pk)): t for (bucket, _), t in totals[Dimension.TOTAL].items()}
    else:
        totals = _totals(scope=scope, dimensions=(dimension,), period=period, interval=interval, until=until)
        grouped = totals[dimension]
    labels = _labels(dimension, sorted({value for _, value in grouped}))
    points = sorted(grouped.items(), key=lambda item: (item[0][0], item[0][1]))
    latencies = percentiles_many([t.histogram for _, t in points], (0.50, 0.95, 0.99))
    costs = _costs([t for _, t in points])
    return [
        {
            "bucket": bucket,
            "group": labels.get(value, value) if group_by else "all",
            "requests": t.requests,
            "errors": t.errors,
            "p50_ms": p50,
            "p95_ms": p95,
            "p99_ms": p99,
            "rows": t.rows,
            "predictions": t.predictions,
            "tokens": t.prompt_tokens + t.completion_tokens,
            "prompt_tokens": t.prompt_tokens,
            "completion_tokens": t.completion_tokens,
            "cost": cost,
            "unpriced_tokens": t.unpriced_tokens,
        }
        for ((bucket, value), t), (p50, p95, p99), cost in zip(points, latencies, costs, strict=True)
    ]


def usage_top(
    *, user: User, period: Period, dimension: str, limit: int = 10, by: tuple[str, ...] = ("requests",)
) -> dict[str, list[tuple[str, Totals]]]:
    """The top values of one dimension over the period, ranked by each total named in `by`
    (requests, cost...), with readable names: one read of the totals for every ranking."""
    scope = _scope(user)
    grouped = _totals(scope=scope, dimensions=(dimension,), period=period, interval=None, until=_aggregated_until())
    values = [(value, t) for (_, value), t in grouped[dimension].items()]
    tops = {name: sorted(values, key=lambda item: -getattr(item[1], name))[:limit] for name in by}
    labels = _labels(dimension, sorted({value for top in tops.values() for value, _ in top}))
    return {name: [(labels[value], t) for value, t in top] for name, top in tops.items()}
