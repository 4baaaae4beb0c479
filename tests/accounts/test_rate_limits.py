"""Rate limits on the real Redis: per user, per key (with its own rate), per login, headers,
the 429 body, and what happens when Redis is down."""

import logging
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.test import override_settings

from accounts.services import api_key_create
from tests.inference.helpers import IRIS_ROW

MODELS = "/api/v1/models/"
KEYS = "/api/v1/api-keys/"
TOKEN = "/api/v1/auth/token/"


@pytest.fixture
def rates(settings):
    def set_rates(**overrides: str) -> None:
        settings.RATE_LIMITS = {**settings.RATE_LIMITS, **overrides}

    return set_rates


def test_headers_on_every_limited_answer_and_429_in_the_error_shape(client_for, alice, rates):
    rates(default="3/d")
    client = client_for(alice)
    answers = [client.get(MODELS) for _ in range(4)]
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    assert [a["X-RateLimit-Remaining"] for a in answers] == ["2", "1", "0", "0"]
    assert all(a["X-RateLimit-Limit"] == "3" for a in answers)
    assert all(0 < int(a["X-RateLimit-Reset"]) <= 86400 for a in answers)

    limited = answers[-1]
    assert limited.json()["error"]["code"] == "rate_limited"
    assert 0 < int(limited["Retry-After"]) <= 86400


def test_limits_are_per_user(client_for, alice, bob, rates):
    rates(default="2/d")
    alice_client = client_for(alice)
    for _ in range(2):
        alice_client.get(MODELS)
    assert alice_client.get(MODELS).status_code == 429
    assert client_for(bob).get(MODELS).status_code == 200


def test_a_key_is_limited_by_its_own_rate_apart_from_its_owner(client_for, alice, anon, rates):
    rates(default="5/d")
    created = api_key_create(user=alice, name="tight", created_by=None, rate="2/d")
    anon.credentials(HTTP_X_API_KEY=created.key)
    codes = [anon.get(MODELS).status_code for _ in range(3)]
    assert codes == [200, 200, 429]
    assert anon.get(MODELS)["X-RateLimit-Limit"] == "2"
    # Alice's own JWT traffic has its own budget.
    assert client_for(alice).get(MODELS).status_code == 200


def test_a_key_without_its_own_rate_gets_the_default(alice, anon, rates):
    rates(default="4/d")
    created = api_key_create(user=alice, name="plain", created_by=None)
    anon.credentials(HTTP_X_API_KEY=created.key)
    assert anon.get(MODELS)["X-RateLimit-Limit"] == "4"


def test_refused_requests_use_no_quota(client_for, alice, staff, anon, rates):
    """Requests refused by authentication (401) or permissions (403) never reach the limit, even
    though a worker that knows the key counts it ahead, in the round trip that reads the stamps."""
    rates(default="3/d")
    staff.is_superuser = True
    staff.save()
    created = api_key_create(user=staff, name="staff", created_by=None)
    anon.credentials(HTTP_X_API_KEY=created.key)
    assert anon.get(KEYS)["X-RateLimit-Remaining"] == "2"
    assert [anon.post(KEYS, {"user": "alice", "name": "x"}, format="json").status_code for _ in range(3)] == [403] * 3
    assert anon.get(KEYS)["X-RateLimit-Remaining"] == "1"

    jwt = client_for(alice)
    assert jwt.get(MODELS)["X-RateLimit-Remaining"] == "2"
    alice.is_active = False
    alice.save()
    assert [jwt.get(MODELS).status_code for _ in range(3)] == [401] * 3
    alice.is_active = True
    alice.save()
    assert jwt.get(MODELS)["X-RateLimit-Remaining"] == "1"


def test_requests_refused_after_the_limit_is_checked_are_charged(alice, anon, rates):
    """Bad input (400) and unknown objects (404) got past the limit: they count, as ever."""
    rates(default="5/d", predictions="5/d")
    created = api_key_create(user=alice, name="careless", created_by=None)
    anon.credentials(HTTP_X_API_KEY=created.key)
    assert anon.get(MODELS)["X-RateLimit-Remaining"] == "4"
    assert anon.get("/api/v1/predictions/999999999/").status_code == 404
    assert anon.get(MODELS)["X-RateLimit-Remaining"] == "2"
    bad = anon.post("/api/v1/predictions/", {"features": [1, 2]}, format="json")
    assert (bad.status_code, bad["X-RateLimit-Remaining"]) == (400, "4")
    assert anon.post("/api/v1/predictions/", {"features": IRIS_ROW}, format="json")["X-RateLimit-Remaining"] == "3"


def test_the_prediction_route_refuses_what_authentication_refuses_without_charging(alice, anon, rates):
    """It counts in the round trip that reads the stamps, before the key is checked: a refused
    key's count is taken back."""
    rates(predictions="3/d")
    created = api_key_create(user=alice, name="soon revoked", created_by=None)
    anon.credentials(HTTP_X_API_KEY=created.key)
    assert anon.post("/api/v1/predictions/", {"features": IRIS_ROW}, format="json")["X-RateLimit-Remaining"] == "2"
    alice.is_active = False
    alice.save()
    refused = [anon.post("/api/v1/predictions/", {"features": IRIS_ROW}, format="json") for _ in range(3)]
    assert [response.status_code for response in refused] == [401] * 3
    alice.is_active = True
    alice.save()
    assert anon.post("/api/v1/predictions/", {"features": IRIS_ROW}, format="json")["X-RateLimit-Remaining"] == "1"


def test_a_changed_key_rate_is_counted_at_once_on_the_prediction_route(alice, anon, rates):
    """The worker's copy of the key counts ahead at the rate it knew; a changed rate is taken back
    and counted again at the new one."""
    rates(predictions="9/d")
    created = api_key_create(user=alice, name="changing", created_by=None, rate="3/d")
    anon.credentials(HTTP_X_API_KEY=created.key)
    body = {"features": IRIS_ROW}
    assert anon.post("/api/v1/predictions/", body, format="json")["X-RateLimit-Remaining"] == "2"
    for rate, remaining in (("5/d", "4"), ("3/d", "1")):
        created.api_key.rate = rate
        created.api_key.save()
        assert anon.post("/api/v1/predictions/", body, format="json")["X-RateLimit-Remaining"] == remaining


def test_a_changed_key_rate_counts_each_request_once(alice, anon, rates):
    """The worker's old copy of the key counts ahead at the old rate; the throttle, seeing the
    new one, takes that count back before counting at the new rate."""
    rates(default="9/d")
    created = api_key_create(user=alice, name="changing", created_by=None, rate="3/d")
    anon.credentials(HTTP_X_API_KEY=created.key)
    assert anon.get(MODELS)["X-RateLimit-Remaining"] == "2"
    for rate, remaining in (("5/d", "4"), ("3/d", "1")):
        created.api_key.rate = rate
        created.api_key.save()
        assert anon.get(MODELS)["X-RateLimit-Remaining"] == remaining


def test_groups_count_separately(client_for, alice, rates):
    """Making predictions has its own group; the other routes share the default one."""
    rates(default="2/d", predictions="1/d")
    client = client_for(alice)
    client.get(MODELS)
    assert client.post("/api/v1/predictions/", {"features": IRIS_ROW}, format="json").status_code == 201
    assert client.post("/api/v1/predictions/", {"features": IRIS_ROW}, format="json").status_code == 429
    client.get("/api/v1/predictions/")  # listing them is the default group's
    assert client.get(MODELS).status_code == 429


def test_the_token_route_is_limited_per_address_whatever_x_forwarded_for_says(anon, db, rates):
    rates(**{"login-ip": "3/d"})
    for n in range(3):
        anon.post(TOKEN, {"username": f"u{n}", "password": "x"}, format="json", HTTP_X_FORWARDED_FOR=f"10.0.0.{n}")
    response = anon.post(TOKEN, {"username": "u9", "password": "x"}, format="json", HTTP_X_FORWARDED_FOR="10.9.9.9")
    assert response.status_code == 429


def test_behind_a_trusted_proxy_the_forwarded_address_is_limited(anon, db, rates, settings):
    settings.TRUSTED_PROXIES = ["127.0.0.0/8"]
    rates(**{"login-ip": "2/d"})
    for n in range(2):
        anon.post(TOKEN, {"username": f"u{n}", "password": "x"}, format="json", HTTP_X_FORWARDED_FOR="203.0.113.5")
    blocked = anon.post(TOKEN, {"username": "u8", "password": "x"}, format="json", HTTP_X_FORWARDED_FOR="203.0.113.5")
    other = anon.post(TOKEN, {"username": "u9", "password": "x"}, format="json", HTTP_X_FORWARDED_FOR="203.0.113.6")
    assert (blocked.status_code, other.status_code) == (429, 401)


DOWN_CACHE = {
    "default": {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": "redis://127.0.0.1:1/0",  # nothing listens on port 1
        "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 0.2, "SOCKET_TIMEOUT": 0.2},
    }
}


def test_redis_down_fail_open_keeps_serving_and_logs_loudly(client_for, alice, caplog, settings):
    settings.RATE_LIMIT_FAIL_OPEN = True
    client = client_for(alice)
    with override_settings(CACHES=DOWN_CACHE), caplog.at_level(logging.ERROR):
        answers = [client.get(MODELS) for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 200]
    assert "X-RateLimit-Limit" not in answers[0]
    assert "rate-limit store unavailable" in caplog.text


def test_redis_down_fail_closed_is_503_in_the_error_shape(client_for, alice, settings):
    settings.RATE_LIMIT_FAIL_OPEN = False
    with override_settings(CACHES=DOWN_CACHE):
        response = client_for(alice).get(MODELS)
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "service_unavailable"


def test_a_non_shared_cache_stops_the_start_in_test_settings(db):
    local = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    with override_settings(CACHES=local), pytest.raises(SystemCheckError, match=r"django_ratelimit\.E003"):
        call_command("check")


def test_exactly_the_limit_gets_through_across_gunicorn_workers(gunicorn_server, alice):
    """Many more concurrent requests than the limit, spread over four worker processes."""
    limit, attempts = 25, 120
    created = api_key_create(user=alice, name="burst", created_by=None, rate=f"{limit}/d")
    base_url = gunicorn_server(workers=4)

    def call(_: int) -> int:
        return requests.get(f"{base_url}{MODELS}", headers={"X-API-Key": created.key}, timeout=30).status_code

    with ThreadPoolExecutor(max_workers=32) as pool:
        codes = list(pool.map(call, range(attempts)))
    assert codes.count(200) == limit
    assert codes.count(429) == attempts - limit


def test_exactly_the_limit_of_predictions_gets_through_across_production_workers(gunicorn_server, alice):
    """The prediction route counts in its own round trip (inference/fast_path.py): as exact."""
    limit, attempts = 25, 120
    created = api_key_create(user=alice, name="burst", created_by=None, rate=f"{limit}/d")
    base_url = gunicorn_server(workers=4, production_config=True)

    def call(_: int) -> int:
        return requests.post(
            f"{base_url}/api/v1/predictions/",
            json={"features": [5.1, 3.5, 1.4, 0.2]},
            headers={"X-API-Key": created.key},
            timeout=30,
        ).status_code

    with ThreadPoolExecutor(max_workers=32) as pool:
        codes = list(pool.map(call, range(attempts)))
    assert codes.count(201) == limit
    assert codes.count(429) == attempts - limit


def test_a_bad_rate_in_the_settings_stops_the_start(db, settings):
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "generation": "lots/m"}
    with pytest.raises(SystemCheckError, match=r"accounts\.E001"):
        call_command("check")


def test_sentiment_through_an_upstream_is_limited_like_generation(client_for, alice, fake_openai, rates, settings):
    settings.SENTIMENT_BACKEND = "openai"
    rates(generation="1/d", default="100/d")
    client = client_for(alice)
    assert client.post("/api/v1/sentiment/", {"text": "I love it"}, format="json").status_code == 201
    assert client.post("/api/v1/sentiment/", {"text": "I hate it"}, format="json").status_code == 429
