"""What a key has spent of its token budget, for its detail route and its admin list.

Spending happens elsewhere (inference/budgets.py, which counts it); that app says how to read it
here when it is ready, so accounts imports none of it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from accounts.models import ApiKey

SpendReader = Callable[[ApiKey], dict[str, Any] | None]
_reader: SpendReader | None = None


def register(reader: SpendReader) -> None:
    global _reader  # one reader per process, set at start-up
    _reader = reader


def spend_of(api_key: ApiKey) -> dict[str, Any] | None:
    """{"period", "period_start", "period_end", "budget", "used", "remaining"}, or None without a budget."""
    return _reader(api_key) if _reader is not None else None
