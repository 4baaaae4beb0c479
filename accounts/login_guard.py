"""Password guessing, limited without letting a stranger lock anyone out.

Failed logins are counted in the shared cache, in fixed windows, three ways:

- per (username, client address): the one attacker at one address guessing one password. Over
  LOGIN_FAILURES_PER_USERNAME_AND_ADDRESS, that address may not try that username again until
  the window ends. Another address, such as the owner's, is not affected.
- per address, whatever the username: one address spraying passwords over many accounts.
- per username, from every address: a guess spread over many addresses. Its limit is far above
  what one address can reach (the per-address limit), and past it an address may try that
  username only while it has not failed for it: each address gets one guess, and an owner at an
  address that has not been failing still logs in.

A try is counted before the password is checked (an atomic increment, so concurrent guesses
cannot slip past the limit) and taken back when it turns out not to be a failure: a correct
password, or a request refused before any password was checked.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import caches
from rest_framework.exceptions import AuthenticationFailed, Throttled

from accounts.ratelimits import split_rate
from project import metrics
from project.cache import STORE_ERRORS
from project.errors import ServiceUnavailable

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Counter:
    key: str
    limit: int
    window_ends: float  # a Unix time

    @property
    def wait(self) -> int:
        return max(int(self.window_ends - time.time()) + 1, 1)


def _counter(kind: str, who: str, rate: str, now: float) -> _Counter:
    limit, seconds = split_rate(rate)
    window = int(now // seconds)
    # Hashed: a password typed into the username field must not sit in the cache in clear.
    digest = hashlib.sha256(f"{kind}|{who}".encode()).hexdigest()[:32]
    return _Counter(f"login-failures:{kind}:{rate}:{window}:{digest}", limit, (window + 1) * seconds)


def address_bucket(address: str) -> str:
    """Who an address is, for counting: an IPv6 address by its /64, which one subscriber usually
    holds whole (counting each /128 would give them 2**64 fresh addresses)."""
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return address
    if parsed.version == 6 and parsed.ipv4_mapped is None:
        return str(ipaddress.ip_network(f"{parsed}/64", strict=False))
    return str(parsed)


def _cache():  # noqa: ANN202 - Django's cache proxy
    return caches[settings.RATELIMIT_USE_CACHE]


def _increment(counter: _Counter) -> int:
    cache = _cache()
    cache.add(counter.key, 0, timeout=int(counter.window_ends - time.time()) + 60)
    return cache.incr(counter.key)


def _take_back(counters: list[_Counter]) -> None:
    for counter in counters:
        try:
            _cache().decr(counter.key)
        except ValueError:  # the window is over and its counter gone
            pass
        except STORE_ERRORS as exc:  # the count stands: a lost take-back only errs towards limiting
            logger.warning("could not take back a login count (%s)", exc.__class__.__name__)


class LoginRefused(Throttled):
    default_detail = "Too many failed logins; try again later."
    wait: int | None  # seconds, rounded up: set by Throttled.__init__, which DRF's stubs leave out


@contextmanager
def login_attempt(
    *, username: str, address: str, failures: tuple[type[BaseException], ...] = (AuthenticationFailed,)
) -> Iterator[None]:
    """Around one password check: refuses it (LoginRefused, a 429) when a limit is reached;
    otherwise lets it run, and keeps its counts only if it ends in one of `failures`."""
    limits = settings.LOGIN_FAILURE_LIMITS
    now = time.time()
    name = username.strip().lower()[:150]
    address = address_bucket(address)
    pair = _counter("username-address", f"{address}|{name}", limits["username_address"], now)
    per_address = _counter("address", address, limits["address"], now)
    per_username = _counter("username", name, limits["username"], now)
    counters = [pair, per_address, per_username]
    try:
        counts = [_increment(counter) for counter in counters]
    except STORE_ERRORS as exc:
        logger.error("login limits unavailable (%s)", exc.__class__.__name__)
        if not settings.RATE_LIMIT_FAIL_OPEN:
            raise ServiceUnavailable("The rate-limit store is unavailable; try again shortly.") from None
        yield
        return
    pair_count, address_count, username_count = counts
    refused_by = [
        counter
        for counter, over in (
            (pair, pair_count > pair.limit),
            (per_address, address_count > per_address.limit),
            # Past the username's limit, only an address that has not failed for it may try.
            (per_username, username_count > per_username.limit and pair_count > 1),
        )
        if over
    ]
    if refused_by:
        _take_back(counters)
        metrics.count_refusal("login_guard")
        raise LoginRefused(wait=max(counter.wait for counter in refused_by))
    try:
        yield
    except failures:
        raise  # a failure: it stays counted
    except BaseException:
        _take_back(counters)  # refused before a password was judged (a 400), or our own error
        raise
    _take_back(counters)
    _cache().delete(pair.key)  # the right password: this address starts afresh for this username
