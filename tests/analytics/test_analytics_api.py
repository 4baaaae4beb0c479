"""The analytics API against a seeded data set: the rollups agree with a direct count over the
raw rows, percentiles are within the histogram's stated error, re-running and purging change
nothing, and nobody sees anyone else's numbers."""

import csv
import io
import json
import math
from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.auth import get_user_model
from django.db.models import Count, F, Q, Sum
from django.db.models.functions import TruncDay
from django.utils import timezone

from analytics import aggregation, selectors
from analytics.aggregation import endpoint_label, usage_aggregate
from analytics.histogram import FIELDS, RELATIVE_ERROR, unpack
from analytics.models import AggregationState, RequestLog, UsageRollup
from analytics.selectors import Period
from inference.seeding import LLM_MODEL, usage_seed

SUMMARY = "/api/v1/analytics/summary/"
USAGE = "/api/v1/analytics/usage/"


@pytest.fixture
def seeded(db):
    """Three days of synthetic traffic, aggregated; the period covering all of it."""
    result = usage_seed(rows=4000, days=3, seed=11)
    usage_aggregate(since=result.start)
    start = result.start.replace(minute=0, second=0, microsecond=0)
    end = timezone.now().replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    return {"start": start.isoformat(), "end": end.isoformat()}


def direct(query=None):
    rows = RequestLog.objects.all() if query is None else query
    return rows.aggregate(
        requests=Count("id"),
        errors=Count("id", filter=Q(status__gte=400)),
        server_errors=Count("id", filter=Q(status__gte=500)),
        predictions=Count("id", filter=Q(rows__gt=0)),
        rows=Sum("rows"),
        prompt=Sum("prompt_tokens"),
        completion=Sum("completion_tokens"),
    )


def exact_percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q * len(ordered))) - 1]


def within_stated_error(estimate: float, exact: float) -> bool:
    return abs(estimate - exact) <= RELATIVE_ERROR * exact + 0.5


# Each test counts the raw rows just before its call: the call's own log row lands after it.


def test_summary_agrees_exactly_with_a_direct_count(client_for, staff, seeded):
    truth = direct()
    assert truth["requests"] == 4000
    body = client_for(staff).get(SUMMARY, seeded).json()
    assert body["requests"] == truth["requests"]
    assert body["errors"] == truth["errors"]
    assert body["server_errors"] == truth["server_errors"]
    assert body["error_rate"] == pytest.approx(truth["errors"] / truth["requests"], abs=1e-6)
    assert body["predictions"] == truth["predictions"]
    assert body["rows"] == truth["rows"]
    assert body["tokens"] == {
        "prompt": truth["prompt"],
        "completion": truth["completion"],
        "total": truth["prompt"] + truth["completion"],
    }


def test_breakdowns_agree_with_direct_counts(client_for, staff, seeded):
    truth = {
        endpoint_label(row["method"], row["endpoint"]): row["n"]
        for row in RequestLog.objects.values("method", "endpoint").annotate(n=Count("id"))
    }
    models = dict(
        RequestLog.objects.filter(rows__gt=0).values("model").annotate(n=Count("id")).values_list("model", "n")
    )
    spent = (
        RequestLog.objects.exclude(model="")
        .values("model")
        .annotate(t=Sum(F("prompt_tokens") + F("completion_tokens")), c=Sum("cost"))
    )
    body = client_for(staff).get(SUMMARY, seeded).json()
    assert {item["endpoint"]: item["requests"] for item in body["by_endpoint"]} == truth
    # the generation routes' rows name their model too, and make no predictions
    assert {item["model"]: item["predictions"] for item in body["by_model"]} == {**models, LLM_MODEL: 0}
    for item in body["by_model"]:
        expected = next(row for row in spent if row["model"] == item["model"])
        assert item["tokens"] == expected["t"] and item["cost"] == pytest.approx(expected["c"], abs=1e-6)
    top = body["top_users"]
    assert [u["requests"] for u in top] == sorted((u["requests"] for u in top), reverse=True)
    heaviest = RequestLog.objects.exclude(user=None).values("user__username").annotate(n=Count("id")).order_by("-n")[0]
    assert (top[0]["username"], top[0]["requests"]) == (heaviest["user__username"], heaviest["n"])


def test_percentiles_are_within_the_histograms_stated_error(client_for, staff, seeded):
    body = client_for(staff).get(SUMMARY, seeded).json()
    latencies = list(RequestLog.objects.values_list("latency_ms", flat=True))
    for name, q in (("p50", 0.50), ("p95", 0.95), ("p99", 0.99)):
        exact = exact_percentile(latencies, q)
        assert within_stated_error(body["latency_ms"][name], exact), (name, body["latency_ms"][name], exact)


def test_daily_series_by_user_agrees_with_a_direct_count(client_for, staff, seeded):
    truth = {
        (row["day"].date().isoformat(), row["user__username"] or "anonymous"): row["n"]
        for row in RequestLog.objects.annotate(day=TruncDay("created_at"))
        .values("day", "user__username")
        .annotate(n=Count("id"))
    }
    body = client_for(staff).get(USAGE, {**seeded, "interval": "day", "group_by": "user"}).json()
    assert (body["interval"], body["group_by"]) == ("day", "user")
    got = {(point["bucket"][:10], point["group"]): point["requests"] for point in body["series"]}
    assert got == truth


def test_hourly_series_with_percentiles_per_point(client_for, staff, seeded):
    body = client_for(staff).get(USAGE, {**seeded, "interval": "hour", "group_by": "status"}).json()
    assert sum(p["requests"] for p in body["series"]) == 4000
    point = max(body["series"], key=lambda p: p["requests"])
    hour_start = timezone.datetime.fromisoformat(point["bucket"])
    latencies = list(
        RequestLog.objects.filter(
            created_at__gte=hour_start, created_at__lt=hour_start + timedelta(hours=1), status=int(point["group"])
        ).values_list("latency_ms", flat=True)
    )
    assert len(latencies) == point["requests"]
    assert within_stated_error(point["p95_ms"], exact_percentile(latencies, 0.95))


def test_running_the_aggregation_again_changes_nothing(seeded):
    def snapshot():
        return sorted(
            UsageRollup.objects.values_list("granularity", "bucket", "scope_user_id", "dimension", "value", "requests")
        )

    before = snapshot()
    usage_aggregate(since=timezone.now() - timedelta(days=4))
    usage_aggregate()
    assert snapshot() == before
    assert before


def test_a_run_that_fails_halfway_leaves_everything_as_it_was(seeded, monkeypatch):
    before = list(UsageRollup.objects.order_by("id").values_list("id", "requests"))

    def fail(start):
        raise RuntimeError("the machine lost power")

    monkeypatch.setattr(aggregation, "_days_from_hours", fail)
    with pytest.raises(RuntimeError):
        usage_aggregate(since=timezone.now() - timedelta(days=4))
    assert list(UsageRollup.objects.order_by("id").values_list("id", "requests")) == before


def test_purging_raw_rows_keeps_the_numbers(staff, seeded):
    period = Period(start=datetime.fromisoformat(seeded["start"]), end=datetime.fromisoformat(seeded["end"]))
    before = selectors.usage_summary(user=staff, period=period)
    series_before = selectors.usage_series(user=staff, period=period, interval="day", group_by="model")
    deleted = aggregation.request_logs_purge(older_than=timedelta(hours=2))
    assert deleted > 1000
    assert RequestLog.objects.count() < 4000 - 1000
    assert selectors.usage_summary(user=staff, period=period) == before
    assert selectors.usage_series(user=staff, period=period, interval="day", group_by="model") == series_before
    # Rollups of purged hours cannot be recomputed, and the command says so rather than zero them.
    with pytest.raises(aggregation.AggregationError):
        usage_aggregate(since=timezone.now() - timedelta(days=4))


def test_the_latest_requests_count_before_the_next_run(client_for, staff, alice, seeded):
    before = client_for(staff).get(SUMMARY, seeded).json()["requests"]
    client = client_for(alice)
    for _ in range(3):
        client.get("/api/v1/models/")
    after = client_for(staff).get(SUMMARY, seeded).json()
    # Three model lists, plus the staff's own first summary call.
    assert after["requests"] == before + 4


def test_alice_sees_only_her_own_numbers(client_for, seeded):
    User = get_user_model()
    alice = User.objects.get(username="seed-user-00")
    # Counted before the call: the call's own row is written after its answer.
    truth = direct(RequestLog.objects.filter(user=alice))
    body = client_for(alice).get(SUMMARY, seeded).json()
    assert body["requests"] == truth["requests"]
    assert body["errors"] == truth["errors"]
    assert [u["username"] for u in body["top_users"]] == ["seed-user-00"]

    by_user = client_for(alice).get(USAGE, {**seeded, "group_by": "user"}).json()
    assert {p["group"] for p in by_user["series"]} == {"seed-user-00"}
    by_key = client_for(alice).get(USAGE, {**seeded, "group_by": "api_key"}).json()
    her_keys = {f"{k.name} ({k.prefix})" for k in alice.api_keys.all()} | {"no key"}
    assert {p["group"] for p in by_key["series"]} <= her_keys


def test_a_user_with_no_traffic_sees_zeros(client_for, bob, seeded):
    body = client_for(bob).get(SUMMARY, seeded).json()
    assert (body["requests"], body["top_users"], body["by_endpoint"]) == (0, [], [])


def test_csv(client_for, staff, seeded):
    response = client_for(staff).get(USAGE, {**seeded, "group_by": "model", "format": "csv"})
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert {row["group"] for row in rows} == {"iris", "diabetes", LLM_MODEL}
    assert sum(int(row["requests"]) for row in rows) == RequestLog.objects.exclude(model="").count()


@pytest.mark.parametrize(
    ("route", "params", "field"),
    [
        (USAGE, {"interval": "week"}, "interval"),
        (USAGE, {"group_by": "colour"}, "group_by"),
        (USAGE, {"interval": "hour", "start": "2026-01-01T00:00:00Z", "end": "2026-03-01T00:00:00Z"}, "interval"),
        (USAGE, {"start": "2026-03-01T00:00:00Z", "end": "2026-01-01T00:00:00Z"}, "start"),
        (SUMMARY, {"start": "yesterday"}, "start"),
        (SUMMARY, {"end": "2026-02-30T00:00:00Z"}, "end"),
        (SUMMARY, {"start": "2020-01-01T00:00:00Z", "end": "2026-01-01T00:00:00Z"}, "start"),
        (USAGE, {"group_by": "user", "format": "csv", "interval": "fortnight"}, "interval"),
        # Given empty is given wrong, not left out.
        (SUMMARY, {"start": ""}, "start"),
        (USAGE, {"end": ""}, "end"),
        (USAGE, {"interval": ""}, "interval"),
        (USAGE, {"group_by": ""}, "group_by"),
        (USAGE, {"format": ""}, "format"),
    ],
)
def test_bad_parameters_are_400(client_for, staff, route, params, field):
    response = client_for(staff).get(route, params)
    assert response.status_code == 400
    assert response["Content-Type"] == "application/json"
    assert field in response.json()["error"]["details"]


def test_analytics_needs_credentials(anon, db):
    assert anon.get(SUMMARY).status_code == 401
    assert anon.get(USAGE).status_code == 401


def test_aggregating_an_empty_log_is_fine(db):
    run = usage_aggregate()
    assert run.rollups == 0
    assert AggregationState.objects.get(pk=1).aggregated_until == run.until


EXTREMES = [
    ("end", {"end": "9999-12-31T23:59:59Z"}),
    ("end", {"end": "0001-01-01T00:30:00Z"}),
    ("end", {"end": "0001-01-20T00:00:00Z"}),  # the default 30 days before it are before year 1
    ("start", {"start": "9999-12-31T23:00:00Z", "end": "9999-12-31T23:59:59Z"}),
    ("start", {"start": "0001-01-01T00:00:00Z", "end": "0001-01-03T00:00:00Z"}),
    ("start", {"start": "0001-01-01T00:00:00+05:00"}),
    ("end", {"end": "9999-12-31T23:59:59-05:00"}),
]


@pytest.mark.parametrize("route", [SUMMARY, USAGE])
@pytest.mark.parametrize(("field", "params"), EXTREMES)
@pytest.mark.parametrize("aggregated", [False, True])
def test_dates_beyond_what_can_be_computed_are_400_naming_the_field(
    client_for, staff, route, field, params, aggregated
):
    if aggregated:
        usage_aggregate()
    response = client_for(staff).get(route, params)
    assert response.status_code == 400, response.content
    assert field in response.json()["error"]["details"]


@pytest.mark.parametrize(
    "params",
    [
        {"start": "0001-01-02T00:00:00Z", "end": "0001-01-03T00:00:00Z"},
        {"start": "9999-12-29T00:00:00Z", "end": "9999-12-30T00:00:00Z"},
        {"start": "9999-12-29T00:00:00Z", "end": "9999-12-30T00:00:00Z", "interval": "hour"},
        {"start": "0001-01-02T00:00:00Z", "end": "0001-01-02T05:00:00Z", "interval": "hour", "group_by": "user"},
    ],
)
@pytest.mark.parametrize("route", [SUMMARY, USAGE])
def test_the_earliest_and_latest_periods_accepted_are_answered(client_for, staff, route, params):
    usage_aggregate()
    response = client_for(staff).get(route, params)
    assert response.status_code == 200, response.content


def _numbers(value, path=""):
    """Every number in a JSON document, with where it is."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _numbers(item, f"{path}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _numbers(item, f"{path}[{index}]")
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        yield path, value


COUNT_NAMES = ("requests", "errors", "server_errors", "predictions", "rows", "tokens", "prompt", "completion", "total")


@pytest.mark.parametrize("params", [{}, {"interval": "day", "group_by": "model"}, {"interval": "hour"}])
def test_counts_stay_integers_after_aggregation(client_for, staff, seeded, params):
    """Sums over the rollups' bigint columns come back from PostgreSQL as numeric: the answers
    must still say 14, never 14.0."""
    route = USAGE if params else SUMMARY
    if params.get("interval") == "hour":
        params = {**params, "start": seeded["start"], "end": seeded["end"]}
    else:
        params = {**params, **seeded}
    text = client_for(staff).get(route, params).content.decode()
    counts = [(path, value) for path, value in _numbers(json.loads(text)) if path.rsplit(".", 1)[-1] in COUNT_NAMES]
    assert counts
    assert [(path, value) for path, value in counts if not isinstance(value, int)] == []
    assert any(value > 0 for path, value in counts if path.endswith("rows"))


def test_failed_predictions_count_against_their_model(client_for, alice, staff):
    """A request refused for its rows was still for a model: by_model counts its error."""
    client = client_for(alice)

    def predict(body):
        return client.post("/api/v1/predictions/", body, format="json").status_code

    assert predict({"model": "diabetes", "features": [1, 2]}) == 400
    assert predict({"features": "not rows"}) == 400  # the default model's
    assert predict({"model": "iris", "features": [1, 2, 3, 4]}) == 201
    # An unknown name is not a model: it gets no group of its own.
    assert predict({"model": "nosuch", "features": [1]}) == 404
    rows = RequestLog.objects.filter(endpoint="v1:prediction-list").order_by("id")
    assert [(row.model, row.status) for row in rows] == [("diabetes", 400), ("iris", 400), ("iris", 201), ("", 404)]
    by_model = {m["model"]: m for m in client_for(staff).get(SUMMARY).json()["by_model"]}
    assert (by_model["diabetes"]["requests"], by_model["diabetes"]["errors"]) == (1, 1)
    assert (by_model["iris"]["requests"], by_model["iris"]["errors"], by_model["iris"]["predictions"]) == (2, 1, 1)
    assert "nosuch" not in by_model


def test_csv_cells_that_a_spreadsheet_would_run_are_made_text(client_for, staff, alice):
    """Staff name keys, and users pick usernames: in a CSV, "=..." is a formula to a spreadsheet."""
    from accounts.services import api_key_create

    for name in ('=HYPERLINK("http://evil.example","x")', "+cmd|' /C calc'!A0", "@SUM(1+1)", "-2+3"):
        key = api_key_create(user=alice, name=name, created_by=staff).key
        assert client_for(None).get("/api/v1/models/", HTTP_X_API_KEY=key).status_code == 200
    response = client_for(staff).get(USAGE, {"group_by": "api_key", "format": "csv"})
    groups = [row["group"] for row in csv.DictReader(io.StringIO(response.content.decode()))]
    assert len([g for g in groups if g != "no key"]) == 4
    assert all(not group.startswith(("=", "+", "-", "@")) for group in groups)
    assert any(group.startswith("'=HYPERLINK") for group in groups)


@pytest.mark.parametrize("moment", ["2026-01-01T10:00:00Z", "2026-01-01T10:30:00Z"])
@pytest.mark.parametrize("route", [SUMMARY, USAGE])
def test_a_period_that_starts_where_it_ends_is_answered(client_for, staff, route, moment):
    """start == end is a period like any other: empty on the hour, else the hour it falls in."""
    response = client_for(staff).get(route, {"start": moment, "end": moment})
    assert response.status_code == 200, response.content
    body = response.json()
    hour = datetime(2026, 1, 1, 10, tzinfo=UTC)
    assert datetime.fromisoformat(body["start"]) == hour
    assert datetime.fromisoformat(body["end"]) == hour + timedelta(hours=0 if moment.endswith("10:00:00Z") else 1)


def test_packed_bins_are_the_columns_and_rows_without_them_read_the_same(client_for, staff, seeded):
    rows = list(UsageRollup.objects.values_list("bins", *FIELDS))
    assert rows and all(bins is not None for bins, *_ in rows)
    assert unpack([bytes(bins) for bins, *_ in rows]).tolist() == [list(counts) for _, *counts in rows]

    period = Period(start=datetime.fromisoformat(seeded["start"]), end=datetime.fromisoformat(seeded["end"]))

    def series() -> list[dict]:
        return selectors.usage_series(user=staff, period=period, interval="day", group_by="api_key")

    packed = series()
    UsageRollup.objects.update(bins=None)  # as rows aggregated before bins were packed
    assert series() == packed
    assert any(point["p95_ms"] for point in packed)
