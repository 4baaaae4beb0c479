"""What a key has spent of its token budget, for its detail route and its admin list.

Spending happens elsewhere (inference/budgets.py, which counts it); that app says how to read it
here when it is ready, so accounts imports none of it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.db import DatabaseError

from accounts.models import ApiKey
from project.errors import AppError

SpendReader = Callable[[ApiKey], dict[str, Any] | None]
SpendForgetter = Callable[[ApiKey], None]
# What reading a spend raises when it cannot be read right now: the store (Redis) is unreachable,
# or the request log it is counted again from is. Where a key is shown, it is shown without it.
UNREADABLE = (AppError, DatabaseError)
_reader: SpendReader | None = None
_forgetter: SpendForgetter | None = None


def register(reader: SpendReader, forgetter: SpendForgetter) -> None:
    global _reader, _forgetter  # one of each per process, set at start-up
    _reader, _forgetter = reader, forgetter


def budget_changed(api_key: ApiKey) -> None:
    """The key's budget was removed, or its period changed: what was counted under it is dropped,
    and counted again from the request log when next needed."""
    if _forgetter is not None:
        _forgetter(api_key)


def spend_of(api_key: ApiKey) -> dict[str, Any] | None:
    """{"period", "period_start", "period_end", "budget", "used", "remaining"}, or None without a budget."""
    return _reader(api_key) if _reader is not None else None
