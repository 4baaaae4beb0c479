"""Any saved or deleted API key or user makes every worker's copies stale (project/freshness.py).

Saves through the ORM and the admin arrive here; services that write with UPDATE bump the stamp
themselves (api_key_revoke). Anything else is bounded by FRESHNESS_MAX_AGE_SECONDS.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.db.models.signals import post_delete, post_save

from accounts.models import ApiKey
from project import freshness


def _auth_rows_changed(sender: Any, update_fields: Any = None, **kwargs: Any) -> None:
    # Logging in saves last_login, and using a key saves last_used_at: neither changes access.
    if update_fields is not None and set(update_fields) <= {"last_login", "last_used_at"}:
        return
    freshness.bump(freshness.AUTH)


def connect() -> None:
    for model in (ApiKey, get_user_model()):
        post_save.connect(_auth_rows_changed, sender=model, dispatch_uid=f"freshness-auth-save-{model.__name__}")
        post_delete.connect(_auth_rows_changed, sender=model, dispatch_uid=f"freshness-auth-delete-{model.__name__}")
