"""Rate limits, counted in the shared cache (Redis) with django-ratelimit.

Counting is django-ratelimit's: an atomic add-then-increment on one cache key per (group, who,
window), so every worker and host sees the same count and exactly `limit` requests pass in a
window. What is counted, and against which rate:

- an API key's requests against the key's own rate, if it has one, else the group's rate;
- a user's (JWT) requests against the group's rate;
- the token routes per client address (failed logins are counted apart: accounts.login_guard).

When the cache cannot be reached the behaviour is RATE_LIMIT_FAIL_OPEN: serve unlimited and log
an error (the default), or answer 503. A failed store is not asked again for a few seconds, so
an outage does not add a connection timeout to every request.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import caches
from django.http import HttpRequest
from django_ratelimit.core import ALL, EXPIRATION_FUDGE, _get_window, _make_cache_key, _split_rate, get_usage
from django_redis import get_redis_connection
from django_redis.exceptions import ConnectionInterrupted
from redis.exceptions import RedisError

from project import freshness
from project.errors import ServiceUnavailable
from project.http import client_ip

logger = logging.getLogger(__name__)

# A count, then a period of at most 999 units; zero periods and absurd windows are refused here,
# not discovered as errors inside django-ratelimit or Redis on some later request.
RATE_PATTERN = re.compile(r"^[1-9]\d{0,8}/([1-9]\d{0,2})?[smhd]$")
STORE_ERRORS = (RedisError, ConnectionInterrupted, OSError)
_RETRY_STORE_AFTER_SECONDS = 5.0
_store_down_until = 0.0


@dataclass(frozen=True)
class Usage:
    limit: int
    remaining: int
    reset_seconds: int
    limited: bool
    counter: str  # the cache key this request was counted on, to take the count back


def rate_is_valid(rate: str) -> bool:
    return bool(RATE_PATTERN.match(rate))


_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def split_rate(rate: str) -> tuple[int, int]:
    """(count, period in seconds) of a valid rate such as "100/m" or "5/15m"."""
    count, period = rate.split("/")
    multiplier = int(period[:-1]) if len(period) > 1 else 1
    return int(count), multiplier * _UNIT_SECONDS[period[-1]]


def per_second(rate: str) -> float:
    count, seconds = split_rate(rate)
    return count / seconds


def group_rate(group: str) -> str:
    return settings.RATE_LIMITS[group]


def rate_limit_hit(*, request: HttpRequest, group: str, who: str, rate: str, read_stamps: bool = False) -> Usage | None:
    """Count one request by `who` in `group`; None when the store is down and we fail open.

    With `read_stamps`, the freshness stamps (project/freshness.py) are read in the same round
    trip and left on the request; with the store down they are left as unknown.
    """
    global _store_down_until  # one flag per process, by design
    if read_stamps:
        freshness.remember_stamps(request, None)
    if time.monotonic() < _store_down_until:
        return _store_unavailable(None)
    try:
        if not settings.RATELIMIT_ENABLE:
            if read_stamps:
                freshness.remember_stamps(request, freshness.read_stamps())
            return None
        counter, window = _counter(group=group, who=who, rate=rate)
        if _redis_cache():
            usage, stamps = _usage_in_one_round_trip(counter=counter, window=window, rate=rate, read_stamps=read_stamps)
            if read_stamps:
                freshness.remember_stamps(request, stamps)
        else:
            usage = get_usage(request, group=group, key=lambda _group, _request: who, rate=rate, increment=True)
            if read_stamps:
                freshness.remember_stamps(request, freshness.read_stamps())
    except STORE_ERRORS as exc:  # only the store being unreachable; anything else is a bug
        _store_down_until = time.monotonic() + _RETRY_STORE_AFTER_SECONDS
        return _store_unavailable(exc)
    if usage is None:  # RATELIMIT_ENABLE is off
        return None
    if usage["time_left"] < 0:  # django-ratelimit could not read or write its counter
        return _store_unavailable(None)
    return Usage(
        limit=usage["limit"],
        remaining=max(usage["limit"] - usage["count"], 0),
        reset_seconds=max(usage["time_left"], 1),
        limited=usage["should_limit"],
        counter=counter,
    )


def rate_limit_undo(usage: Usage) -> None:
    """Take back the count rate_limit_hit made (for a request that turned out not to be
    chargeable). Nothing happens if the counter has expired meanwhile: DECR on a missing key
    would create one at -1 with no expiry, so the cache's decr, which refuses to, is used."""
    if time.monotonic() < _store_down_until:  # no waiting on a store just found unreachable
        return
    try:
        caches[settings.RATELIMIT_USE_CACHE].decr(usage.counter)
    except ValueError:  # the window is over and its counter gone
        pass
    except STORE_ERRORS as exc:  # the count stands; a lost undo only errs towards limiting
        logger.warning("could not take back a rate-limit count (%s)", exc.__class__.__name__)


def _counter(*, group: str, who: str, rate: str) -> tuple[str, int]:
    """django-ratelimit's cache key for the current window of (group, who, rate), and when
    that window ends."""
    _, period = _split_rate(rate)
    window = _get_window(who, period)
    return _make_cache_key(group, window, rate, who, ALL), window


def _redis_cache() -> bool:
    return caches[settings.RATELIMIT_USE_CACHE].__class__.__name__ == "RedisCache"


def _usage_in_one_round_trip(
    *, counter: str, window: int, rate: str, read_stamps: bool
) -> tuple[dict[str, int | bool], freshness.Stamps | None]:
    """django-ratelimit's count, on the same key and window, in one Redis round trip (with the
    freshness stamps, when asked).

    django-ratelimit asks the cache to ADD the key and then INCR it: two round trips per check.
    INCR creates a missing key at 1, which is what ADD did, so INCR and EXPIRE ... NX in one
    pipeline count exactly the same, atomically, across every worker and host.
    """
    limit, period = _split_rate(rate)
    cache = caches[settings.RATELIMIT_USE_CACHE]
    key = cache.make_and_validate_key(counter)
    pipe = get_redis_connection(settings.RATELIMIT_USE_CACHE).pipeline(transaction=False)
    pipe.incr(key)
    pipe.expire(key, period + EXPIRATION_FUDGE, nx=True)
    stamp_keys = [cache.make_and_validate_key(freshness.stamp_key(scope)) for scope in freshness.SCOPES]
    if read_stamps:
        pipe.mget(stamp_keys)
    count, _, *found = pipe.execute()
    stamps = None
    if read_stamps:
        values = zip(freshness.SCOPES, found[0], strict=True)
        stamps = freshness.with_missing_set(
            {scope: None if raw is None else cache.client.decode(raw) for scope, raw in values}
        )
    usage = {"count": count, "limit": limit, "should_limit": count > limit, "time_left": window - int(time.time())}
    return usage, stamps


def _store_unavailable(exc: Exception | None) -> None:
    if exc is not None:
        logger.error("rate-limit store unavailable (%s); %s", exc.__class__.__name__, _policy())
    if not settings.RATE_LIMIT_FAIL_OPEN:
        raise ServiceUnavailable("The rate-limit store is unavailable; try again shortly.")
    return None


def _policy() -> str:
    return "serving without rate limits" if settings.RATE_LIMIT_FAIL_OPEN else "refusing requests (503)"


def client_key(request: HttpRequest) -> str:
    return f"ip:{client_ip(request) or 'unknown'}"
