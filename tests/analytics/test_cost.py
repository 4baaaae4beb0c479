"""Tokens and their estimated cost per key, user and model, by day and month: through the usage
API, its CSV and the summary, from the calls made with the real openai SDK against the local
OpenAI-protocol server, before and after aggregation, agreeing with the rows."""

from __future__ import annotations

import csv
import io
import random
from collections import defaultdict
from datetime import UTC, datetime, timedelta

import pytest

from accounts.services import api_key_create
from analytics.aggregation import usage_aggregate
from analytics.histogram import BINS, percentiles, percentiles_many
from analytics.models import RequestLog
from inference.models import Generation, SentimentCall
from project.prices import Price, PriceTableError, price_of, price_table

PRICES = '{"fake-gpt": {"prompt": 3.0, "completion": 15.0}}'
USAGE = "/api/v1/analytics/usage/"


def _cost(model: str, prompt: int, completion: int) -> float:
    price = price_table(PRICES)[model]
    return (prompt * price.prompt + completion * price.completion) / 1_000_000


def test_the_price_table_takes_changes_and_refuses_nonsense():
    table = price_table('{"my-llama": {"prompt": 0.1, "completion": 0.2}, "gpt-4o": null}')
    assert table["my-llama"] == Price(0.1, 0.2)
    assert "gpt-4o" not in table and table["gpt-4o-mini"] == Price(0.15, 0.60)
    assert price_table("") == price_table("{}")
    for raw in (
        "not json",
        "[]",
        '{"m": 1}',
        '{"m": {"prompt": 1}}',
        '{"m": {"prompt": -1, "completion": 0}}',
        '{"m": {"prompt": "1", "completion": 0}}',
        '{"m": {"prompt": true, "completion": 0}}',
        '{"m": {"prompt": 1, "completion": 0, "cached": 0.5}}',
    ):
        with pytest.raises(PriceTableError):
            price_table(raw)


def test_a_dated_snapshot_is_priced_as_its_model_and_other_variants_are_not():
    table = price_table('{"gpt-4": {"prompt": 30, "completion": 60}}')
    assert price_of("gpt-4o-mini-2024-07-18", table) == table["gpt-4o-mini"]
    assert price_of("gpt-4o-2024-08-06", table) == table["gpt-4o"]
    assert price_of("gpt-4-0613", table) == table["gpt-4"]
    assert price_of("gpt-4o", table) == table["gpt-4o"]
    assert price_of("gpt-4o-audio-preview", table) is None
    assert price_of("ft:gpt-4o-mini-2024-07-18:acme::abc123", table) is None
    assert price_of("gpt-4omni", table) is None
    assert price_of("my-own-model", table) is None


def test_many_histograms_give_the_percentiles_each_gives_alone():
    rng = random.Random(3)
    histograms = [[rng.choice([0, 0, 0, 1, 5, 200]) for _ in range(BINS)] for _ in range(300)]
    histograms += [[0] * BINS, [0] * (BINS - 1) + [7], [1] + [0] * (BINS - 1)]
    qs = (0.5, 0.95, 0.99)
    assert percentiles_many(histograms, qs) == [tuple(percentiles(h, qs)) for h in histograms]
    assert percentiles_many([], qs) == []


@pytest.fixture
def priced(fake_openai, settings):
    settings.LLM_PRICES = price_table(PRICES)
    settings.SENTIMENT_BACKEND = "openai"
    return fake_openai


def _calls(client_for, alice, bob):
    """Calls of every kind that spends tokens, by two users, with and without keys."""
    budgeted = api_key_create(
        user=alice, name="budgeted", created_by=None, token_budget_tokens=1_000_000, token_budget_period="month"
    )
    plain = api_key_create(user=bob, name="plain", created_by=None)
    client = client_for(None)

    def post(key: str | None, path: str, body: dict) -> None:
        headers = {"HTTP_AUTHORIZATION": f"Bearer {key}"} if key else {}
        response = (client_for(alice) if key is None else client).post(path, body, format="json", **headers)
        assert response.status_code in (200, 201), response.content

    for words in ("one two", "three four five", "six"):
        post(budgeted.key, "/v1/chat/completions", {"messages": [{"role": "user", "content": words}]})
    post(budgeted.key, "/api/v1/generations/", {"prompt": "a haiku", "max_tokens": 20})
    post(budgeted.key, "/v1/embeddings", {"input": ["embed these words", "and these"]})
    post(budgeted.key, "/api/v1/sentiment/", {"texts": ["I love it", "I hate it", "It is"]})
    # a model the table has no price for: its tokens are unpriced, not free
    for _ in range(2):
        post(plain.key, "/v1/chat/completions", {"model": "mystery", "messages": [{"role": "user", "content": "hi"}]})
    post(None, "/api/v1/generations/", {"prompt": "by token, not key"})  # alice, with a JWT
    return budgeted, plain


def _expected():
    """Cost and tokens per model and per user, from the generation and sentiment rows."""
    by_model: dict[str, list] = defaultdict(lambda: [0, 0.0, 0])
    by_user: dict[int, list] = defaultdict(lambda: [0, 0.0, 0])
    rows = [
        *Generation.objects.values_list("user_id", "model", "prompt_tokens", "completion_tokens"),
        *SentimentCall.objects.values_list("user_id", "model", "prompt_tokens", "completion_tokens"),
    ]
    table = price_table(PRICES)
    for user_id, model, prompt, completion in rows:
        price = price_of(model, table)
        for target in (by_model[model], by_user[user_id]):
            target[0] += prompt + completion
            if price is None:
                target[2] += prompt + completion
            else:
                target[1] += (prompt * price.prompt + completion * price.completion) / 1_000_000
    return by_model, by_user


def _series(client, **params) -> list[dict]:
    response = client.get(USAGE, params)
    assert response.status_code == 200, response.content
    assert response.json()["currency"] == "USD"
    return response.json()["series"]


def _check(client, alice, bob, budgeted, plain) -> None:
    by_model, by_user = _expected()
    assert set(by_model) == {"fake-gpt", "text-embedding-3-small", "mystery"}
    assert by_model["mystery"][2] > 0 and by_model["mystery"][1] == 0
    assert by_model["text-embedding-3-small"][1] > 0

    for month in (False, True):
        interval = "month" if month else "day"
        models = _series(client, interval=interval, group_by="model")
        got = {p["group"]: p for p in models if p["tokens"]}
        assert set(got) == set(by_model)
        for model, (tokens, cost, unpriced) in by_model.items():
            assert got[model]["tokens"] == tokens
            assert got[model]["cost"] == pytest.approx(cost, abs=1e-9)
            assert got[model]["unpriced_tokens"] == unpriced
        if month:
            first_of_month = datetime.now(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
            assert {datetime.fromisoformat(p["bucket"]) for p in models} == {first_of_month}

        users = {p["group"]: p for p in _series(client, interval=interval, group_by="user") if p["tokens"]}
        assert users["alice"]["cost"] == pytest.approx(by_user[alice.pk][1], abs=1e-9)
        assert users["bob"]["unpriced_tokens"] == by_user[bob.pk][2] > 0 and users["bob"]["cost"] == 0

        keys = {p["group"]: p for p in _series(client, interval=interval, group_by="api_key") if p["tokens"]}
        logged = RequestLog.objects.filter(api_key=budgeted.api_key)
        expected = sum(
            _cost(m, p, c) if m == "fake-gpt" else price_of(m, price_table(PRICES)).prompt * p / 1_000_000
            for m, p, c in logged.values_list("model", "prompt_tokens", "completion_tokens")
        )
        assert keys["budgeted (" + budgeted.api_key.prefix + ")"]["cost"] == pytest.approx(expected, abs=1e-9)
        # alice's own generation by JWT is hers but no key's
        assert keys["no key"]["cost"] == pytest.approx(by_user[alice.pk][1] - expected, abs=1e-9)

    summary = client.get("/api/v1/analytics/summary/").json()
    assert summary["cost"]["amount"] == pytest.approx(sum(c for _, c, _ in by_model.values()), abs=1e-9)
    assert summary["cost"]["unpriced_tokens"] == by_model["mystery"][2]
    assert summary["cost"]["currency"] == "USD"
    per_model = {m["model"]: m for m in summary["by_model"]}
    assert per_model["fake-gpt"]["cost"] == pytest.approx(by_model["fake-gpt"][1], abs=1e-9)

    text = client.get(USAGE, {"group_by": "model", "format": "csv"}).content.decode()
    lines = {row["group"]: row for row in csv.DictReader(io.StringIO(text)) if int(row["tokens"])}
    assert float(lines["fake-gpt"]["cost"]) == pytest.approx(by_model["fake-gpt"][1], abs=1e-9)
    assert int(lines["mystery"]["unpriced_tokens"]) == by_model["mystery"][2]


def test_cost_per_key_user_and_model_agrees_with_the_rows(client_for, staff, alice, bob, priced):
    budgeted, plain = _calls(client_for, alice, bob)
    staff_client = client_for(staff)
    # the key's spend is its requests' tokens
    spend = staff_client.get(f"/api/v1/api-keys/{budgeted.api_key.pk}/").json()["spend"]
    logged = RequestLog.objects.filter(api_key=budgeted.api_key).values_list("prompt_tokens", "completion_tokens")
    assert spend["used"] == sum(p + c for p, c in logged) > 0

    _check(staff_client, alice, bob, budgeted, plain)  # from the raw rows: nothing aggregated yet
    usage_aggregate(since=datetime.now(UTC) - timedelta(hours=2), now=datetime.now(UTC) + timedelta(seconds=5))
    _check(staff_client, alice, bob, budgeted, plain)  # from the rollups


def test_a_user_sees_only_their_own_cost(client_for, staff, alice, bob, priced):
    _calls(client_for, alice, bob)
    _, by_user = _expected()
    mine = _series(client_for(bob), group_by="api_key")
    assert {p["group"] for p in mine if p["tokens"]} == {
        f"plain ({RequestLog.objects.filter(user=bob).first().api_key.prefix})"
    }
    summary = client_for(bob).get("/api/v1/analytics/summary/").json()
    assert summary["cost"] == {"amount": 0.0, "currency": "USD", "unpriced_tokens": by_user[bob.pk][2]}


@pytest.mark.django_db
def test_usage_by_month_buckets_calendar_months(client_for, staff):
    def log(moment: datetime, cost: float) -> None:
        RequestLog.objects.create(
            request_id="00000000-0000-0000-0000-000000000001",
            created_at=moment,
            method="POST",
            path="/v1/chat/completions",
            endpoint="openai:chat-completions",
            status=200,
            latency_ms=10,
            model="fake-gpt",
            prompt_tokens=100,
            completion_tokens=10,
            cost=cost,
        )

    log(datetime(2026, 9, 30, 23, 30, tzinfo=UTC), 0.25)
    log(datetime(2026, 10, 1, 0, 30, tzinfo=UTC), 0.5)
    log(datetime(2026, 10, 31, 12, 0, tzinfo=UTC), 1.0)
    usage_aggregate(since=datetime(2026, 9, 30, tzinfo=UTC), now=datetime(2026, 11, 2, tzinfo=UTC))
    series = _series(client_for(staff), interval="month", start="2026-09-15T00:00:00Z", end="2026-11-01T00:00:00Z")
    assert [(p["bucket"][:10], p["requests"], p["tokens"], p["cost"]) for p in series] == [
        ("2026-09-01", 1, 110, 0.25),
        ("2026-10-01", 2, 220, 1.5),
    ]


@pytest.mark.parametrize(
    ("end", "start"),
    [
        ("2026-03-31T10:00:00Z", "2025-04-01"),
        ("2026-01-31T00:30:00Z", "2025-02-01"),
        ("2025-12-15T23:00:00Z", "2025-01-01"),
        ("2026-11-01T00:00:00Z", "2025-12-01"),
    ],
)
@pytest.mark.django_db
def test_by_month_the_default_period_is_this_month_and_the_eleven_before(client_for, staff, end, start):
    body = client_for(staff).get(USAGE, {"interval": "month", "end": end}).json()
    assert body["start"][:10] == start
