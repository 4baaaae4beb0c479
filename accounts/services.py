"""Writes of API keys."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.contrib.auth.models import User
from django.utils import timezone

from accounts import spend
from accounts.keys import key_generate
from accounts.models import ApiKey
from project import freshness

# last_used_at is kept to this resolution, so that using a key is not a write per request.
LAST_USED_RESOLUTION = timedelta(seconds=60)


@dataclass(frozen=True)
class CreatedKey:
    api_key: ApiKey
    key: str  # the full key: give it to the client once, never store it


def api_key_create(
    *,
    user: User,
    name: str,
    created_by: User | None,
    expires_at: datetime | None = None,
    rate: str = "",
    **limits: Any,
) -> CreatedKey:
    """A new key; `limits` are its generation limits, by field (token_budget_tokens and
    token_budget_period, tokens_per_minute, max_parallel)."""
    new = key_generate()
    api_key = ApiKey.objects.create(
        user=user,
        name=name,
        prefix=new.prefix,
        key_hash=new.key_hash,
        expires_at=expires_at,
        rate=rate,
        created_by=created_by,
        **limits,
    )
    return CreatedKey(api_key=api_key, key=new.key)


def budget_shape(api_key: ApiKey) -> tuple[bool, str]:
    """What a key's budget counters depend on: whether it has a budget, and its period. (The
    amount is not: a counter counts tokens used, whatever the budget.)"""
    return api_key.token_budget_tokens is not None, api_key.token_budget_period


def api_key_limits_saved(*, api_key: ApiKey, budget_before: tuple[bool, str]) -> None:
    """A key's changed limits were saved (through the API or the admin): its budget counters are
    dropped when its budget came, went or changed period, and every worker uses the limits from
    its next request."""
    if budget_shape(api_key) != budget_before:
        spend.budget_changed(api_key)
    freshness.bump(freshness.AUTH)


def api_key_limits_set(*, api_key: ApiKey, **fields: Any) -> ApiKey:
    """Change a key's limits (its rate, token budget, tokens per minute, parallel generations);
    every worker uses them from its next request."""
    budget_before = budget_shape(api_key)
    for name, value in fields.items():
        setattr(api_key, name, value)
    api_key.save(update_fields=list(fields))
    api_key_limits_saved(api_key=api_key, budget_before=budget_before)
    return api_key


def api_key_revoke(*, api_key: ApiKey) -> ApiKey:
    """Revoke a key; every worker refuses it from its next request (the freshness stamp)."""
    if api_key.revoked_at is None:
        api_key.revoked_at = timezone.now()
        ApiKey.objects.filter(pk=api_key.pk, revoked_at__isnull=True).update(revoked_at=api_key.revoked_at)
        freshness.bump(freshness.AUTH)
    return api_key


def api_key_mark_used(*, api_key: ApiKey, now: datetime) -> bool:
    """Record that the key was used, at most once per LAST_USED_RESOLUTION; True when written."""
    if api_key.last_used_at is None or now - api_key.last_used_at >= LAST_USED_RESOLUTION:
        # No freshness bump: last_used_at changes nothing about who may do what.
        ApiKey.objects.filter(pk=api_key.pk).update(last_used_at=now)
        api_key.last_used_at = now
        return True
    return False
