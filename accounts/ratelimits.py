"""Rate limits: rates, whom a request is counted as, and counting with django-ratelimit.

Counting is django-ratelimit's public `get_usage`: an atomic add-then-increment on one cache
key per (group, who, window), so every worker and host sees the same count and exactly `limit`
requests pass in a window. What is counted, and against which rate:

- an API key's requests against the key's own rate, if it has one, else the group's rate (on the
  costlier groups a key's rate can only tighten);
- a user's (JWT) requests against the group's rate;
- the token routes per client address (failed logins are counted apart: accounts.login_guard).

The prediction route counts its own group in its own single Redis round trip
(inference/fast_path.py); every other route counts here.

When the cache cannot be reached the behaviour is RATE_LIMIT_FAIL_OPEN: serve unlimited and log
an error (the default), or answer 503. A failed store is not asked again for a few seconds, so
an outage does not add a connection timeout to every request.
"""

from __future__ import annotations

import logging
import re
import time
from typing import Any

from django.conf import settings
from django.http import HttpRequest
from django_ratelimit.core import get_usage

from accounts.models import ApiKey
from project.cache import STORE_ERRORS
from project.context import RateUsage
from project.errors import ServiceUnavailable
from project.http import client_ip

logger = logging.getLogger(__name__)

# A count, then a period of at most 999 units; zero periods and absurd windows are refused here,
# not discovered as errors inside django-ratelimit or Redis on some later request. Matched whole
# (fullmatch: a pattern's $ would let "5/m\n" through) and in ASCII digits only (\d takes Arabic-Indic digits too).
RATE_PATTERN = re.compile(r"[1-9][0-9]{0,8}/([1-9][0-9]{0,2})?[smhd]")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_RETRY_STORE_AFTER_SECONDS = 5.0
_store_down_until = 0.0


def rate_is_valid(rate: str) -> bool:
    return RATE_PATTERN.fullmatch(rate) is not None


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


def subject_rate(group: str, api_key: ApiKey | None) -> str:
    """The rate a request of `group` is counted against: a key's own rate replaces the group's
    on the cheap groups, and on the costly one (generation) can only make it tighter."""
    rate = group_rate(group)
    own = api_key.rate if api_key is not None else ""
    if own and (group != "generation" or per_second(own) < per_second(rate)):
        return own
    return rate


def subject(*, api_key: ApiKey | None, user_pk: Any, request: HttpRequest) -> str:
    """Whom a request is counted as: its API key, else its user, else its client address."""
    if api_key is not None:
        return f"key:{api_key.pk}"
    if user_pk is not None:
        return f"user:{user_pk}"
    return client_key(request)


def client_key(request: HttpRequest) -> str:
    return f"ip:{client_ip(request) or 'unknown'}"


def store_is_down() -> bool:
    """The store failed a moment ago: do not wait on it again yet."""
    return time.monotonic() < _store_down_until


def store_failed(exc: BaseException | None) -> None:
    """The store could not be reached: remember it for a few seconds, log, and apply
    RATE_LIMIT_FAIL_OPEN (return: serve without limits; raise: 503)."""
    global _store_down_until  # one flag per process, by design
    if exc is not None:
        _store_down_until = time.monotonic() + _RETRY_STORE_AFTER_SECONDS
        policy = "serving without rate limits" if settings.RATE_LIMIT_FAIL_OPEN else "refusing requests (503)"
        logger.error("rate-limit store unavailable (%s); %s", exc.__class__.__name__, policy)
    if not settings.RATE_LIMIT_FAIL_OPEN:
        raise ServiceUnavailable("The rate-limit store is unavailable; try again shortly.")


def count(request: HttpRequest, *, group: str, who: str, rate: str) -> RateUsage | None:
    """Count one request by `who` in `group` with django-ratelimit; None when it is off or the
    store is down and we fail open."""
    if store_is_down():
        store_failed(None)
        return None
    try:
        usage = get_usage(request, group=group, key=lambda _group, _request: who, rate=rate, increment=True)
    except STORE_ERRORS as exc:  # only the store being unreachable; anything else is a bug
        store_failed(exc)
        return None
    if usage is None:  # RATELIMIT_ENABLE is off, or the store failed and django-ratelimit fails open
        return None
    if usage["time_left"] < 0:  # django-ratelimit could not read or write its counter
        store_failed(None)
        return None
    return RateUsage(
        limit=usage["limit"],
        remaining=max(usage["limit"] - usage["count"], 0),
        reset_seconds=max(usage["time_left"], 1),
        limited=usage["should_limit"],
    )
