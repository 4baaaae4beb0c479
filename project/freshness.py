"""Stamps that tell every worker whether its in-process copies of rows are still current.

The prediction route reads no rows it does not write: each worker keeps the API keys, users
and model versions it has read in memory (a `ProcessCache`). What keeps that safe is one stamp
per kind of row in the shared cache (Redis), replaced by a new random value whenever a row of
that kind changes (`bump`). A request reads the stamps once; a copy is used only if it was
loaded under the stamps of that moment. So a revoked key or a new active model version takes
effect on the next request in every worker, with no message to deliver.

Random values, not counters: Redis keeps nothing on disk, and a counter restarting from zero
could repeat a value a copy was loaded under. Changes no stamp hears of (a bulk UPDATE in a
shell, or one made while Redis was down) are bounded by FRESHNESS_MAX_AGE_SECONDS: no copy is
used longer than that. When the stamps cannot be read, copies are not used at all.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from django.conf import settings
from django.db import transaction

from project.cache import STORE_ERRORS, shared_cache

logger = logging.getLogger(__name__)

AUTH = "auth"  # API keys and users
MODELS = "models"  # model versions
SCOPES = (AUTH, MODELS)
Stamps = dict[str, str | None]

T = TypeVar("T")


def stamp_key(scope: str) -> str:
    return f"freshness:{scope}"


def _cache() -> Any:
    return shared_cache()


def read_stamps() -> Stamps | None:
    """The current stamps, or None when the shared cache cannot be reached."""
    try:
        found = _cache().get_many([stamp_key(scope) for scope in SCOPES])
        return with_missing_set({scope: found.get(stamp_key(scope)) for scope in SCOPES})
    except STORE_ERRORS as exc:
        logger.warning("freshness stamps unavailable (%s); reading rows from the database", exc.__class__.__name__)
        return None


def with_missing_set(stamps: Stamps) -> Stamps:
    """`stamps`, with a new random value set for any that is missing (Redis restarted, or the
    key was evicted). Never "missing" as a value to load copies under: a copy loaded while
    the stamp was missing would look current again the next time it went missing, after
    changes it never heard of. Raises the store's errors, like any read of it.
    """
    missing = [scope for scope, stamp in stamps.items() if stamp is None]
    if not missing:
        return stamps
    cache = _cache()
    for scope in missing:
        cache.add(stamp_key(scope), uuid.uuid4().hex, timeout=None)  # SET NX: the first worker's wins
    found = cache.get_many([stamp_key(scope) for scope in missing])
    return {**stamps, **{scope: found.get(stamp_key(scope)) for scope in missing}}


def bump(scope: str) -> None:
    """Say that rows of `scope` changed: every copy loaded before this is stale.

    Done now and again after the surrounding transaction commits: the second closes the gap in
    which another worker could reload the old row between the first bump and the commit.
    """
    _bump_now(scope)
    if transaction.get_connection().in_atomic_block:
        transaction.on_commit(lambda: _bump_now(scope))


def _bump_now(scope: str) -> None:
    try:
        _cache().set(stamp_key(scope), uuid.uuid4().hex, timeout=None)
    except STORE_ERRORS as exc:
        # Copies are then bounded by FRESHNESS_MAX_AGE_SECONDS alone; say so loudly.
        logger.error("could not bump the %s freshness stamp (%s)", scope, exc.__class__.__name__)


_all_caches: list[ProcessCache[Any]] = []


def forget_all() -> None:
    """Drop every copy this process holds (tests, between cases)."""
    for process_cache in _all_caches:
        process_cache.forget()


Row = tuple[tuple[str, ...], list[Any]]  # (field names, values), as Model.from_db takes them


def row_of(instance: Any) -> Row:
    """The values of a model instance, to keep: a cache holds values, never a shared instance."""
    names = tuple(field.attname for field in instance._meta.concrete_fields)
    return names, [getattr(instance, name) for name in names]


def instance_of(model: Any, row: Row) -> Any:
    """A new instance from kept values, so what one request does to it reaches no other."""
    names, values = row
    return model.from_db("default", names, list(values))


class ProcessCache(Generic[T]):
    """Rows of one scope as this process last read them, each with the stamp it was read under."""

    def __init__(self, scope: str) -> None:
        self.scope = scope
        self._entries: dict[Any, tuple[str, float, T]] = {}
        self._lock = threading.Lock()
        _all_caches.append(self)

    def get(self, key: Any, stamps: Stamps | None, load: Callable[[], T]) -> T:
        """The cached value for `key` if it is current, else `load()` (remembered for next time)."""
        stamp = None if stamps is None else stamps[self.scope]
        if stamp is None:  # the stamp is unknown: nothing here can be trusted, nor kept
            return load()
        now = time.monotonic()
        entry = self._entries.get(key)
        if entry is not None and entry[0] == stamp and now - entry[1] < settings.FRESHNESS_MAX_AGE_SECONDS:
            return entry[2]
        value = load()
        with self._lock:
            if len(self._entries) >= settings.FRESHNESS_MAX_ENTRIES:
                self._entries.clear()  # a flood of distinct keys must not grow memory without bound
            self._entries[key] = (stamp, now, value)
        return value

    def peek(self, key: Any) -> T | None:
        """The last value loaded for `key`, current or not (None if none was)."""
        entry = self._entries.get(key)
        return None if entry is None else entry[2]

    def update(self, key: Any, change: Callable[[T], None]) -> None:
        """Apply a write this process made to its own copy (e.g. last_used_at)."""
        entry = self._entries.get(key)
        if entry is not None:
            change(entry[2])

    def forget(self) -> None:
        with self._lock:
            self._entries.clear()
