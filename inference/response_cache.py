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
    """A key from everything that decides the answer (backend, model, input, parameters)."""
    digest = hashlib.sha256(dumps({"kind": kind, **identity})).hexdigest()
    return f"answer:{kind}:{digest}"


def cached_answer(key: str) -> Any | None:
    try:
        return cache.get(key)
    except Exception as exc:  # each cache backend raises its own connection errors
        logger.warning("response cache unavailable (%s); asking the backend", exc.__class__.__name__)
        return None


def remember_answer(key: str, value: Any, *, seconds: int) -> None:
    if seconds <= 0:
        return
    try:
        cache.set(key, value, timeout=seconds)
    except Exception as exc:
        logger.warning("response cache unavailable (%s); answer not cached", exc.__class__.__name__)
