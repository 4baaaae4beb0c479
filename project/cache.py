"""The shared cache (Redis in production): which errors mean it is down, and where it is."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.cache import caches
from django_redis.exceptions import ConnectionInterrupted
from redis.exceptions import RedisError

# Only these mean "the store is unreachable"; anything else is a bug and is left to raise.
STORE_ERRORS = (RedisError, ConnectionInterrupted, OSError)


def shared_cache() -> Any:
    """The cache that rate limits and freshness stamps live in (RATELIMIT_USE_CACHE)."""
    return caches[settings.RATELIMIT_USE_CACHE]


def is_redis(cache: Any) -> bool:
    """Whether `cache` is Redis, where Lua scripts run; `make run`'s local memory is not."""
    return cache.__class__.__name__ == "RedisCache"
