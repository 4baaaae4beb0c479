"""Answers kept in the shared cache, so identical requests do not reach the upstream twice.

A cache that is down only means no caching: it never fails a request.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any

from django.core.cache import cache

from project.json import dumps

logger = logging.getLogger(__name__)


def cache_key(kind: str, **identity: Any) -> str:
    """A key from everything that decides the answer (backend, model, input, parameters) and
    whose it is: answers are not shared between users, or a `cached: true` (or a faster answer)
    would tell one user what another one asked."""
    digest = hashlib.sha256(dumps({"kind": kind, **identity})).hexdigest()
    return f"answer:{kind}:{digest}"


def cached_answers(keys: list[str]) -> dict[str, Any]:
    """The answers found, by key, in one round trip."""
    try:
        return cache.get_many(keys)
    except Exception as exc:  # each cache backend raises its own connection errors
        logger.warning("response cache unavailable (%s); asking the backend", exc.__class__.__name__)
        return {}


def cached_answer(key: str) -> Any | None:
    return cached_answers([key]).get(key)


def remember_answers(answers: dict[str, Any], *, seconds: int) -> None:
    if seconds <= 0 or not answers:
        return
    try:
        cache.set_many(answers, timeout=seconds)
    except Exception as exc:
        logger.warning("response cache unavailable (%s); answer not cached", exc.__class__.__name__)


def remember_answer(key: str, value: Any, *, seconds: int) -> None:
    remember_answers({key: value}, seconds=seconds)
