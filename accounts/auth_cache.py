"""API keys and users as this worker last read them, so authenticating reads no rows.

Kept current by the `auth` freshness stamp (project/freshness.py): any change to a key or a
user — revoking, deactivating, a new password — replaces it, and every worker reads the row
again on its next request. Each request gets its own model instances, built from the cached
values, so nothing one request does to `request.user` reaches another.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser

from accounts.keys import key_matches, key_prefix
from accounts.models import ApiKey
from project import freshness

_Row = freshness.Row
_row_of = freshness.row_of
_instance = freshness.instance_of

_keys: freshness.ProcessCache[tuple[_Row, _Row] | None] = freshness.ProcessCache(freshness.AUTH)
_users: freshness.ProcessCache[_Row | None] = freshness.ProcessCache(freshness.AUTH)


def api_key_current(*, key: str, stamps: freshness.Stamps | None) -> ApiKey | None:
    """The row (with its user) of a well-formed key whose secret matches, usable or not; else None."""
    prefix = key_prefix(key)
    if prefix is None:
        return None

    def load() -> tuple[_Row, _Row] | None:
        found = ApiKey.objects.select_related("user").filter(prefix=prefix).first()
        return None if found is None else (_row_of(found), _row_of(found.user))

    # Unknown prefixes are remembered too, so a stream of made-up keys costs no queries.
    rows = _keys.get(prefix, stamps, load)
    if rows is None or not key_matches(key, rows[0][1][rows[0][0].index("key_hash")]):
        return None
    api_key: ApiKey = _instance(ApiKey, rows[0])
    api_key.user = _instance(get_user_model(), rows[1])
    return api_key


def api_key_last_seen(*, key: str) -> ApiKey | None:
    """This worker's copy of the key's row, current or not, without asking anyone: enough to
    know whom to count for rate limits, never to let a request in (api_key_current does that)."""
    prefix = key_prefix(key)
    rows = _keys.peek(prefix) if prefix is not None else None
    if rows is None or not key_matches(key, rows[0][1][rows[0][0].index("key_hash")]):
        return None
    return _instance(ApiKey, rows[0])


def api_key_used(*, prefix: str, when: datetime) -> None:
    """This worker wrote last_used_at; its copy says so, so it does not write again at once."""

    def change(rows: tuple[_Row, _Row] | None) -> None:
        if rows is not None:
            names, values = rows[0]
            values[names.index("last_used_at")] = when

    _keys.update(prefix, change)


def user_current(*, pk: Any, stamps: freshness.Stamps | None) -> AbstractBaseUser | None:
    """The user with this primary key, active or not; None if there is none."""
    user_model = get_user_model()

    def load() -> _Row | None:
        found = user_model.objects.filter(pk=pk).first()
        return None if found is None else _row_of(found)

    row = _users.get(pk, stamps, load)
    return None if row is None else _instance(user_model, row)
