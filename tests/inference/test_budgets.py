"""Per-key token budgets, tokens per minute and parallel generations: reserved at the worst case,
settled to the real usage, exact across the production server's workers under concurrency, with
the real openai SDK against the local OpenAI-protocol server."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import openai
import pytest
from django.core.signals import request_finished
from django.db import close_old_connections
from django.db.models import Sum

from accounts.models import ApiKey
from accounts.services import api_key_create
from analytics.models import RequestLog
from inference import local_counters
from inference.budgets import prompt_token_bound
from inference.local_counters import LocalCounters
from inference.models import Generation

PROMPT = "one two three four five six seven eight nine ten eleven twelve"
MAX_TOKENS = 5
MESSAGES = [{"role": "user", "content": PROMPT}]
# The fake upstream answers "Echo: <prompt>" cut to max_tokens words, and (usage_as_estimated)
# counts the prompt as the service bounds it: a call uses exactly its worst case.
PER_CALL = prompt_token_bound({"messages": MESSAGES}) + MAX_TOKENS


def _key(user, **limits) -> str:
    return api_key_create(user=user, name="budgeted", created_by=None, rate="100000/m", **limits).key


def _chat(client, key: str, **extra):
    return client.post(
        "/v1/chat/completions",
        {"messages": MESSAGES, "max_tokens": MAX_TOKENS, **extra},
        format="json",
        HTTP_AUTHORIZATION=f"Bearer {key}",
    )


def _spent(api_key: ApiKey) -> int:
    totals = Generation.objects.filter(user=api_key.user).aggregate(p=Sum("prompt_tokens"), c=Sum("completion_tokens"))
    return (totals["p"] or 0) + (totals["c"] or 0)


@pytest.fixture
def exact(fake_openai):
    fake_openai.usage_as_estimated = True
    return fake_openai


@pytest.fixture(params=["redis", "local memory"])
def store(request, settings, monkeypatch):
    """Where the counters are: Redis, or the memory of `make run`'s one process (its local-memory
    cache, where budgets use inference.local_counters)."""
    if request.param == "local memory":
        settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
        monkeypatch.setattr(local_counters, "COUNTERS", LocalCounters())
    return request.param


@pytest.mark.django_db
def test_a_budget_lets_through_the_calls_that_fit_then_429_with_retry_after(alice, client_for, exact, staff, store):
    key = _key(alice, token_budget_tokens=3 * PER_CALL + PER_CALL // 2, token_budget_period="day")
    client = client_for(None)
    statuses = [_chat(client, key).status_code for _ in range(5)]
    assert statuses == [200, 200, 200, 429, 429]
    refused = _chat(client, key)
    body = refused.json()["error"]
    assert body["code"] == "budget_exceeded" and str(PER_CALL) in body["message"]
    assert 0 < int(refused["Retry-After"]) <= 86_400
    api_key = ApiKey.objects.get(user=alice)
    spend = client_for(staff).get(f"/api/v1/api-keys/{api_key.pk}/").json()["spend"]
    assert spend["used"] == 3 * PER_CALL == _spent(api_key)
    assert spend["remaining"] == PER_CALL // 2 and spend["budget"] == 3 * PER_CALL + PER_CALL // 2
    assert spend["period"] == "day"
    # the generation route and a stream are held to the same budget
    generation = client.post(
        "/api/v1/generations/", {"prompt": "hi", "max_tokens": 1}, format="json", HTTP_AUTHORIZATION=f"Bearer {key}"
    )
    assert generation.status_code == 201  # a small call still fits
    streamed = _chat(client, key, stream=True)
    assert streamed.status_code == 429


@pytest.mark.django_db
def test_a_cached_answer_costs_nothing_and_a_failed_call_gives_its_tokens_back(alice, client_for, exact, staff, store):
    key = _key(alice, token_budget_tokens=2 * PER_CALL, token_budget_period="month")
    client = client_for(None)
    assert _chat(client, key, temperature=0).status_code == 200
    assert _chat(client, key, temperature=0).json()["choices"]  # the same answer, from the cache
    exact.mode = "500"
    assert _chat(client, key).status_code == 502
    exact.mode = "ok"
    api_key = ApiKey.objects.get(user=alice)
    spend = client_for(staff).get(f"/api/v1/api-keys/{api_key.pk}/").json()["spend"]
    assert spend["used"] == PER_CALL and spend["period"] == "month"
    assert _chat(client, key).status_code == 200
    assert _chat(client, key).status_code == 429


@pytest.mark.django_db
def test_tokens_per_minute_and_parallel_generations(alice, client_for, exact, store):
    client = client_for(None)
    per_minute = _key(alice, tokens_per_minute=2 * PER_CALL)
    while time.time() % 60 > 50:  # the four calls in one minute
        time.sleep(1)
    assert [_chat(client, per_minute).status_code for _ in range(3)] == [200, 200, 429]
    refused = _chat(client, per_minute)
    assert refused.json()["error"]["code"] == "rate_limited" and 0 < int(refused["Retry-After"]) <= 60

    parallel = _key(alice, max_parallel=1)
    first = _chat(client, parallel, stream=True)  # open until it is read to its end
    assert first.status_code == 200
    second = _chat(client, parallel, stream=True)
    assert second.status_code == 429 and second.json()["error"]["code"] == "too_many_parallel_requests"
    assert second["Retry-After"] == "1"
    b"".join(first.streaming_content)
    third = _chat(client, parallel)
    assert third.status_code == 200


@pytest.mark.django_db
def test_a_stream_without_usage_is_estimated_and_counted(alice, client_for, fake_openai, staff, store):
    """An upstream that ignores include_usage: the stream is charged its estimate, and that stops
    a budget (one that had room for two calls before it, and has room for none after it)."""
    fake_openai.stream_usage = False
    key = _key(alice, token_budget_tokens=2 * PER_CALL - 1, token_budget_period="day")
    client = client_for(None)
    response = _chat(client, key, stream=True)
    b"".join(response.streaming_content)
    generation = Generation.objects.get()
    assert generation.usage_estimated
    assert generation.prompt_tokens == prompt_token_bound({"messages": MESSAGES, "max_tokens": MAX_TOKENS})
    # "Echo: one two three four" is 24 bytes at its bound, but the upstream stops at max_tokens
    assert generation.completion_tokens == MAX_TOKENS
    api_key = ApiKey.objects.get(user=alice)
    spend = client_for(staff).get(f"/api/v1/api-keys/{api_key.pk}/").json()["spend"]
    assert spend["used"] == generation.prompt_tokens + generation.completion_tokens == PER_CALL
    refused = _chat(client, key)
    assert refused.status_code == 429 and refused.json()["error"]["code"] == "budget_exceeded"
    assert Generation.objects.count() == 1


@pytest.mark.django_db
def test_staff_set_limits_through_the_api(alice, staff, client_for):
    staff_client = client_for(staff)
    created = staff_client.post(
        "/api/v1/api-keys/",
        {"user": "alice", "name": "llm", "token_budget": {"tokens": 1000, "period": "day"}, "max_parallel": 2},
        format="json",
    ).json()
    assert created["token_budget"] == {"tokens": 1000, "period": "day"} and created["max_parallel"] == 2
    url = f"/api/v1/api-keys/{created['id']}/"
    changed = staff_client.patch(url, {"tokens_per_minute": 500, "token_budget": None}, format="json").json()
    assert changed["tokens_per_minute"] == 500 and changed["token_budget"] is None and changed["spend"] is None
    for body in (
        {"token_budget": {"tokens": 0, "period": "day"}},
        {"token_budget": {"tokens": 10, "period": "week"}},
        {"tokens_per_minute": "5"},
        {"max_parallel": 0},
    ):
        assert staff_client.patch(url, body, format="json").status_code == 400, body
    assert client_for(alice).patch(url, {"max_parallel": 9}, format="json").status_code == 403
    assert client_for(alice).get(url).json()["max_parallel"] == 2


@pytest.mark.django_db
def test_staff_set_limits_in_the_admin(alice, client, client_for, django_user_model, exact):
    root = django_user_model.objects.create_superuser("root", password="pw-for-tests-only")
    client.force_login(root)
    form = {"name": "from admin", "rate": "", "expires_at": "", "tokens_per_minute": ""}
    budget = {"token_budget_tokens": 2 * PER_CALL, "token_budget_period": "day", "max_parallel": 2}
    added = client.post("/admin/accounts/apikey/add/", {**form, **budget, "user": alice.pk}, follow=True)
    (message,) = [str(m) for m in added.context["messages"] if "mlsk_" in str(m)]
    key = message.split(" is ")[1].split(" ")[0]
    api_key = ApiKey.objects.get(name="from admin")
    limits = (api_key.token_budget_tokens, api_key.token_budget_period, api_key.tokens_per_minute, api_key.max_parallel)
    assert limits == (2 * PER_CALL, "day", None, 2)
    assert [_chat(client_for(None), key).status_code for _ in range(3)] == [200, 200, 429]

    change = f"/admin/accounts/apikey/{api_key.pk}/change/"
    for bad in (
        {"token_budget_tokens": 0},  # as the API: at least 1
        {"token_budget_period": ""},  # tokens without a period
        {"token_budget_period": "week"},
        {"max_parallel": 0},
        {"tokens_per_minute": "-5"},
    ):
        refused = client.post(change, {**form, **budget, **bad})
        assert refused.status_code == 200 and refused.context["adminform"].form.errors, bad
    api_key.refresh_from_db()
    assert (api_key.token_budget_tokens, api_key.max_parallel) == (2 * PER_CALL, 2)  # unchanged

    # a bigger budget a month: counted again from the log (today's two calls are this month's too)
    saved = client.post(change, {**form, **budget, "token_budget_tokens": 3 * PER_CALL, "token_budget_period": "month"})
    assert saved.status_code == 302
    assert [_chat(client_for(None), key).status_code for _ in range(2)] == [200, 429]
    page = client.get("/admin/accounts/apikey/").content.decode()
    assert f"0 of {3 * PER_CALL} this month" in page


def test_the_budget_is_exact_across_four_workers_hit_concurrently(gunicorn_server, alice, staff, fake_openai):
    """4 workers, 24 concurrent callers, a budget with room for exactly 10 calls (and a half)."""
    fake_openai.usage_as_estimated = True
    base = gunicorn_server(workers=4, OPENAI_BASE_URL=fake_openai.base_url, OPENAI_API_KEY="sk-x")
    budget = 10 * PER_CALL + PER_CALL // 2
    key = _key(alice, token_budget_tokens=budget, token_budget_period="day")
    sdk = openai.OpenAI(base_url=f"{base}/v1", api_key=key, max_retries=0, timeout=60)

    def call(_: int) -> str:
        try:
            sdk.chat.completions.create(model="fake-gpt", messages=MESSAGES, max_tokens=MAX_TOKENS)
        except openai.RateLimitError as exc:
            return exc.body["code"] if isinstance(exc.body, dict) else "429"
        return "ok"

    with ThreadPoolExecutor(24) as pool:
        outcomes = list(pool.map(call, range(40)))
    assert outcomes.count("ok") == 10, outcomes
    assert set(outcomes) == {"ok", "budget_exceeded"}
    api_key = ApiKey.objects.get(user=alice)
    assert _spent(api_key) == 10 * PER_CALL
    logged = RequestLog.objects.filter(api_key=api_key, status=200).aggregate(
        p=Sum("prompt_tokens"), c=Sum("completion_tokens")
    )
    assert logged["p"] + logged["c"] == 10 * PER_CALL
    from inference.budgets import spend

    assert spend(api_key)["used"] == 10 * PER_CALL


def test_with_usage_below_the_worst_case_the_budget_is_never_overspent(gunicorn_server, alice, fake_openai, capsys):
    """Calls that use less than they reserve (17 tokens of a 74-token worst case): settling gives
    the rest back (spend counts 17 a call, not 74), and under concurrency the budget still holds:
    what was used never passes it, and spend, generations and the request log agree. How many more
    calls fit than worst cases do depends on how the calls overlap: it is printed, not asserted."""
    base = gunicorn_server(
        workers=4, OPENAI_BASE_URL=fake_openai.base_url, OPENAI_API_KEY="sk-x", RATE_LIMIT_GENERATION="1000/m"
    )  # 80 calls in a minute: more than the generation routes' default rate
    budget = 8 * PER_CALL
    key = _key(alice, token_budget_tokens=budget, token_budget_period="day")
    sdk = openai.OpenAI(base_url=f"{base}/v1", api_key=key, max_retries=0, timeout=60)

    def call(_: int) -> tuple[str, int]:
        try:
            answer = sdk.chat.completions.create(model="fake-gpt", messages=MESSAGES, max_tokens=MAX_TOKENS)
        except openai.RateLimitError as exc:
            return (exc.body["code"] if isinstance(exc.body, dict) else "429"), 0
        assert answer.usage is not None
        return "ok", answer.usage.total_tokens

    with ThreadPoolExecutor(24) as pool:
        results = list(pool.map(call, range(80)))
    outcomes = [outcome for outcome, _ in results]
    assert set(outcomes) <= {"ok", "budget_exceeded"}, outcomes
    answered = outcomes.count("ok")
    per_call = {tokens for outcome, tokens in results if outcome == "ok"}
    assert len(per_call) == 1 and per_call.pop() < PER_CALL  # the upstream's real usage, below the worst case
    real = results[outcomes.index("ok")][1]
    api_key = ApiKey.objects.get(user=alice)
    used = _spent(api_key)
    assert used == answered * real <= budget
    assert answered >= budget // PER_CALL  # never fewer than the worst cases that fit
    logged = RequestLog.objects.filter(api_key=api_key, status=200).aggregate(
        p=Sum("prompt_tokens"), c=Sum("completion_tokens")
    )
    from inference.budgets import spend

    assert logged["p"] + logged["c"] == used == spend(api_key)["used"]
    with capsys.disabled():
        print(
            f"\nbudget {budget} tokens, worst case {PER_CALL}, real {real} a call: "
            f"{answered} of 80 answered ({budget // PER_CALL} worst cases fit, {budget // real} real calls), "
            f"{used} used, {outcomes.count('budget_exceeded')} refused"
        )


def test_tokens_per_minute_and_parallel_hold_under_concurrency(gunicorn_server, alice, fake_openai):
    fake_openai.usage_as_estimated = True
    base = gunicorn_server(workers=4, OPENAI_BASE_URL=fake_openai.base_url, OPENAI_API_KEY="sk-x")

    def run(key: str, count: int) -> list[str]:
        sdk = openai.OpenAI(base_url=f"{base}/v1", api_key=key, max_retries=0, timeout=60)
        start = threading.Barrier(count)

        def call(_: int) -> str:
            start.wait()
            try:
                sdk.chat.completions.create(model="fake-gpt", messages=MESSAGES, max_tokens=MAX_TOKENS)
            except openai.RateLimitError as exc:
                return exc.body["code"] if isinstance(exc.body, dict) else "429"
            return "ok"

        with ThreadPoolExecutor(count) as pool:
            return list(pool.map(call, range(count)))

    run(_key(alice), 8)  # every worker has loaded what a call needs before the burst
    while time.time() % 60 > 45:  # one minute's window for the whole burst
        time.sleep(1)
    per_minute = run(_key(alice, tokens_per_minute=6 * PER_CALL), 16)
    assert per_minute.count("ok") == 6 and set(per_minute) == {"ok", "rate_limited"}, per_minute

    fake_openai.mode, fake_openai.delay = "slow", 2.0  # every call stays open two seconds
    fake_openai.most_in_flight = 0
    parallel = run(_key(alice, max_parallel=3), 12)
    # never more than three at the upstream at once; the rest refused while three were open
    assert fake_openai.most_in_flight == 3, fake_openai.most_in_flight
    assert parallel.count("ok") >= 3 and "too_many_parallel_requests" in parallel, parallel
    assert set(parallel) == {"ok", "too_many_parallel_requests"}


@pytest.mark.django_db
def test_the_admins_key_list_shows_the_budget_left(alice, client, client_for, django_user_model, exact):
    key = _key(alice, token_budget_tokens=1000, token_budget_period="month")
    assert _chat(client_for(None), key).status_code == 200
    root = django_user_model.objects.create_superuser("root", password="pw-for-tests-only")
    client.force_login(root)
    page = client.get("/admin/accounts/apikey/").content.decode()
    assert f"{1000 - PER_CALL:,} of 1,000 this month" in page


@pytest.mark.django_db
def test_the_worst_case_counts_every_choice_and_the_larger_limit(alice, client_for, exact):
    key = _key(alice, token_budget_tokens=10_000, token_budget_period="day")
    from inference.budgets import completion_token_bound

    assert completion_token_bound({"max_tokens": 5, "max_completion_tokens": 50, "n": 3}) == 150
    assert prompt_token_bound({"messages": [{"role": "user", "content": "日本語"}]}) == 3 + 4 + 9  # bytes, not chars
    refused = _chat(client_for(None), key, max_tokens=4000, n=3)  # 12,000 tokens at worst: more than the budget
    assert refused.status_code == 400 and "worst case" in refused.json()["error"]["message"]


@pytest.mark.django_db
def test_spend_is_seeded_again_from_the_log_when_redis_loses_it(alice, client_for, exact, staff):
    from django_redis import get_redis_connection

    key = _key(alice, token_budget_tokens=10 * PER_CALL, token_budget_period="day")
    client = client_for(None)
    for _ in range(3):
        assert _chat(client, key).status_code == 200
    redis = get_redis_connection("default")
    for name in redis.scan_iter(match="mlserve:budget:*"):
        redis.delete(name)
    api_key = ApiKey.objects.get(user=alice)
    assert client_for(staff).get(f"/api/v1/api-keys/{api_key.pk}/").json()["spend"]["used"] == 3 * PER_CALL
    assert _chat(client, key).status_code == 200
    assert client_for(staff).get(f"/api/v1/api-keys/{api_key.pk}/").json()["spend"]["used"] == 4 * PER_CALL


@pytest.mark.django_db
def test_with_redis_unreachable_a_limited_key_is_refused_not_let_through(alice, client_for, exact, monkeypatch):
    import redis

    from inference import budgets

    def unreachable():
        raise redis.ConnectionError("down")

    key = _key(alice, token_budget_tokens=1000, token_budget_period="day")
    monkeypatch.setattr(budgets, "_counters", unreachable)
    refused = _chat(client_for(None), key)
    assert refused.status_code == 503
    assert not exact.completion_calls()


@pytest.mark.django_db
@pytest.mark.parametrize("cause", ["redis", "database"])
def test_a_spend_that_cannot_be_read_leaves_the_key_shown(
    alice, staff, client, client_for, django_user_model, exact, monkeypatch, cause
):
    """The key's detail route and the admin's list both show the key without its spend, whether
    Redis is unreachable or the request log it is counted again from is."""
    import redis
    from django.db import OperationalError

    from inference import budgets

    _key(alice, token_budget_tokens=1000, token_budget_period="day")
    api_key = ApiKey.objects.get(user=alice)
    if cause == "redis":

        def unreachable():
            raise redis.ConnectionError("down")

        monkeypatch.setattr(budgets, "_counters", unreachable)
    else:  # no counter yet, so the spend is counted again from the log, which fails

        def log_unreadable(*args, **kwargs):
            raise OperationalError("the request log cannot be read")

        monkeypatch.setattr(budgets, "_seed", log_unreadable)
    detail = client_for(staff).get(f"/api/v1/api-keys/{api_key.pk}/")
    assert detail.status_code == 200
    assert detail.json()["spend"] is None and detail.json()["token_budget"]["tokens"] == 1000
    client.force_login(django_user_model.objects.create_superuser("root", password="pw-for-tests-only"))
    page = client.get("/admin/accounts/apikey/")
    assert page.status_code == 200 and "unavailable" in page.content.decode()


@pytest.mark.django_db
def test_a_stream_closed_before_it_is_read_is_recorded_and_gives_back_its_slot(alice, client_for, exact, staff, store):
    key = _key(alice, max_parallel=1, token_budget_tokens=10 * PER_CALL, token_budget_period="day")
    client = client_for(None)
    first = _chat(client, key, stream=True)
    assert first.status_code == 200
    # The client went before the first byte was read: the server closes the response unread.
    # (Without the signal the test client also holds back, which would close the test's
    # database connection in the middle of its transaction.)
    request_finished.disconnect(close_old_connections)
    try:
        first.close()
    finally:
        request_finished.connect(close_old_connections)
    generation = Generation.objects.get()
    assert (generation.error_code, generation.output, generation.usage_estimated) == ("client_disconnected", "", True)
    assert generation.prompt_tokens > 0  # the prompt it sent, counted
    api_key = ApiKey.objects.get(user=alice)
    spend = client_for(staff).get(f"/api/v1/api-keys/{api_key.pk}/").json()["spend"]
    assert spend["used"] == generation.prompt_tokens + generation.completion_tokens  # settled, not held
    second = _chat(client, key, stream=True)
    assert second.status_code == 200  # its parallel slot was given back
    b"".join(second.streaming_content)


@pytest.mark.django_db
def test_removing_a_budget_and_setting_it_again_starts_from_the_log(alice, staff, client_for, exact, store):
    key = _key(alice, token_budget_tokens=10 * PER_CALL, token_budget_period="day")
    client = client_for(None)
    assert _chat(client, key).status_code == 200
    api_key = ApiKey.objects.get(user=alice)
    url = f"/api/v1/api-keys/{api_key.pk}/"
    staff_client = client_for(staff)
    staff_client.patch(url, {"token_budget": None}, format="json")
    assert _chat(client, key).status_code == 200  # not counted against a budget it has not got
    staff_client.patch(url, {"token_budget": {"tokens": 10 * PER_CALL, "period": "day"}}, format="json")
    assert staff_client.get(url).json()["spend"]["used"] == 2 * PER_CALL  # both, from the log


def test_a_calls_worst_case_is_the_readmes_74_tokens():
    # README, "Budgets and cost": a 69-token prompt bound (62 bytes, 4 for the message, 3 for the
    # reply) and 5 completion tokens; the fake upstream charges the same bound, so pin it here
    assert prompt_token_bound({"messages": MESSAGES}) == 69 and PER_CALL == 74


class _SlowReads(dict):
    """A counter store whose every read takes a millisecond: threads that are not kept apart
    all read the same count before any of them writes."""

    def get(self, key, default=None):
        found = super().get(key, default)
        time.sleep(0.001)
        return found


def test_the_local_counters_are_exact_across_threads():
    """`make run` serves each request on a thread: 24 threads reserving 40 calls against a budget
    with room for ten and a half take exactly ten (reads are slowed so that, without the lock,
    most would pass), and settling and the parallel limit hold too."""
    counters = LocalCounters()
    counters._numbers = _SlowReads()
    keys = ["mlserve:budget:1:day:20261206", "mlserve:tpm:1:1", "mlserve:parallel:1"]
    counters.set(keys[0], 0)
    now_ms, lease_ms = int(time.time() * 1000), 600_000

    def reserve(number: int) -> int:
        budget = 10 * PER_CALL + PER_CALL // 2
        (outcome,) = counters.reserve(keys, [PER_CALL, budget, -1, -1, str(number), now_ms, lease_ms])
        return outcome

    with ThreadPoolExecutor(24) as pool:
        outcomes = list(pool.map(reserve, range(40)))
    assert outcomes.count(0) == 10 and outcomes.count(1) == 30
    assert counters.get(keys[0]) == 10 * PER_CALL
    counters.settle(keys, [17 - PER_CALL, "0", 1, 0, 0])  # a call that used 17 of its 74
    assert counters.get(keys[0]) == 9 * PER_CALL + 17

    parallel = [PER_CALL, -1, -1, 2]
    assert [counters.reserve(keys, [*parallel, name, now_ms, lease_ms])[0] for name in "abc"] == [0, 0, 3]
    counters.settle(keys, [0, "a", 0, 0, 1])
    assert counters.reserve(keys, [*parallel, "c", now_ms, lease_ms]) == [0]
    # a call older than the lease (its worker never settled it) no longer holds a slot
    assert counters.reserve(keys, [*parallel, "d", now_ms + lease_ms, lease_ms]) == [0]
    assert list(counters.scan_iter(match="mlserve:budget:1:*")) == [keys[0]]
