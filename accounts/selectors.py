"""Reads of API keys."""

from __future__ import annotations

from django.contrib.auth.models import User
from django.db.models import QuerySet

from accounts.models import ApiKey
from project.errors import NotFound

_MAX_BIGINT = 2**63 - 1


def api_key_list(*, user: User) -> QuerySet[ApiKey]:
    """Staff see every key; others their own."""
    query = ApiKey.objects.select_related("user")
    return query if user.is_staff else query.filter(user=user)


def api_key_get(*, user: User, pk: int) -> ApiKey:
    if not 0 < pk <= _MAX_BIGINT:
        raise NotFound("No such API key.")
    found = api_key_list(user=user).filter(pk=pk).first()
    if found is None:
        raise NotFound("No such API key.")
    return found
