"""`Idempotency-Key` on the creating POSTs: a retried request gets the first answer again.

Before the request runs, its key is claimed for the caller in one statement (the one extra round
trip): a new key, an expired one, or a claim whose request was cut off (a worker killed mid-way,
its lease over) is taken; otherwise the row says what to answer instead: the first answer again
when it is done and the body is the same (`Idempotent-Replayed: true`), 409 while it is still
running, 422 when the body differs. The answer is stored with the request's log row, in one
commit (analytics.recording.WriteWithLog): on the prediction route that is the same commit as the
prediction itself, so a prediction whose answer was lost is never made twice. A request that does
not succeed gives its key back, so a retry runs it again.

With STORE_TEXTS off, the answers of the text routes (which hold texts) are kept in the shared
cache for the key's lifetime instead of the database; one the cache lost is run again.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import hmac
import logging
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import orjson
from django.conf import settings
from django.core.cache import cache
from django.http import HttpResponse
from django.utils import timezone
from rest_framework.request import Request

from accounts.ratelimits import STORE_ERRORS
from analytics.recording import Answer, WriteWithLog, write_with_request_log
from inference.models import IdempotencyRecord
from project import db
from project.errors import AppError, InvalidInput, ServiceUnavailable
from project.http import IDEMPOTENCY_KEY_HEADER as HEADER

logger = logging.getLogger(__name__)


_KEY = re.compile(r"^[\x20-\x7e]{1,255}$")  # up to 255 printable ASCII characters
_TABLE = IdempotencyRecord._meta.db_table


class IdempotencyKeyReused(AppError):
    status_code = 422
    code = "idempotency_key_reused"
    default_message = "This Idempotency-Key was used with a different request; use a new key for a new request."
    retryable = False


class RequestInProgress(AppError):
    status_code = 409
    code = "request_in_progress"
    default_message = "A request with this Idempotency-Key is still running; retry when it has finished."
    retry_after = 1


@dataclass(frozen=True)
class Claim:
    record_id: int
    token: str
    body_in_cache: bool


def _fingerprint(request: Request) -> str:
    """The route and the body's content, whitespace and key order aside. An HMAC keyed with the
    server's secret, so that a short text's fingerprint cannot be confirmed from the table alone."""
    route = request._request.resolver_match.view_name if request._request.resolver_match else request.path
    body = orjson.dumps(request.data, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS)
    key = hashlib.sha256(f"idempotency:{settings.SECRET_KEY}".encode()).digest()
    return hmac.new(key, f"{request.method} {route}\n".encode() + body, hashlib.sha256).hexdigest()


_CLAIM_SQL = f"""
INSERT INTO {_TABLE} AS taken (user_id, key, fingerprint, token, state, locked_until, status, content_type,
                               body, created_at, expires_at)
VALUES (%s, %s, %s, %s, 'running', %s, NULL, '', NULL, %s, %s)
ON CONFLICT (user_id, key) DO UPDATE SET
    fingerprint = EXCLUDED.fingerprint, token = EXCLUDED.token, state = 'running',
    locked_until = EXCLUDED.locked_until, status = NULL, content_type = '', body = NULL,
    created_at = EXCLUDED.created_at, expires_at = EXCLUDED.expires_at
WHERE taken.expires_at <= EXCLUDED.created_at
   OR (taken.state = 'running' AND taken.locked_until <= EXCLUDED.created_at)
   OR (taken.state = 'done' AND taken.body IS NULL AND taken.fingerprint = EXCLUDED.fingerprint AND %s)
RETURNING id
"""  # noqa: S608 - the table name is the model's own


def _claim_or_find(
    *, user_id: int, key: str, fingerprint: str, lease: timedelta, cache_lost: bool, body_in_cache: bool
) -> Claim | IdempotencyRecord | None:
    """The claim, when the key could be taken; else the row that holds it (None: gone meanwhile)."""
    now = timezone.now()
    token = secrets.token_hex(16)
    params = [user_id, key, fingerprint, token, now + lease, now, now + _lifetime(), cache_lost]
    with db.prepared_cursor() as cursor:
        cursor.execute(_CLAIM_SQL, params)
        row = cursor.fetchone()
    if row is not None:
        return Claim(record_id=row[0], token=token, body_in_cache=body_in_cache)
    return IdempotencyRecord.objects.filter(user_id=user_id, key=key).first()


def _lifetime() -> timedelta:
    return timedelta(hours=settings.IDEMPOTENCY_KEY_HOURS)


def _cache_key(claim: Claim | IdempotencyRecord) -> str:
    record_id = claim.record_id if isinstance(claim, Claim) else claim.pk
    return f"idempotent-answer:{record_id}:{claim.token}"


def _replay(record: IdempotencyRecord) -> HttpResponse | None:
    if record.body is not None:
        body = bytes(record.body)
    else:
        try:
            body = cache.get(_cache_key(record))
        except STORE_ERRORS:  # running the request again would make it twice: not now
            raise ServiceUnavailable("The store of earlier answers is unavailable; retry shortly.") from None
    if body is None:
        return None  # the cache lost it: the caller runs the request again
    response = HttpResponse(body, status=record.status, content_type=record.content_type or "application/json")
    response["Idempotent-Replayed"] = "true"
    return response


def _settle(claim: Claim, answer: Answer) -> db.Statement:
    """Store a successful answer for the key; give the key back after any other.

    The answer is stored only while this request still holds the key (its token): if it ran so
    long that a retry took the key meanwhile, nothing of the joint write is stored (on the
    prediction route: not the prediction either), and the answer becomes a 503.
    """
    if not 200 <= answer.status < 300 or answer.body is None:
        return _give_back_statement(claim)
    body: bytes | None = answer.body
    if claim.body_in_cache:
        try:
            cache.set(_cache_key(claim), body, timeout=int(_lifetime().total_seconds()))
        except STORE_ERRORS as exc:  # nowhere to keep it: the key is given back instead
            logger.warning("idempotent answer not kept: the cache is unavailable (%s)", exc.__class__.__name__)
            return _give_back_statement(claim)
        body = None
    return db.Statement(
        f"UPDATE {_TABLE} SET state = 'done', status = %s, content_type = %s, body = %s "  # noqa: S608
        "WHERE id = %s AND token = %s RETURNING id",
        [answer.status, answer.content_type[:100], body, claim.record_id, claim.token],
        must_change_a_row=True,
    )


def _give_back_statement(claim: Claim) -> db.Statement:
    return db.Statement(f"DELETE FROM {_TABLE} WHERE id = %s AND token = %s", [claim.record_id, claim.token])  # noqa: S608


def _forget_cached_answer(claim: Claim) -> None:
    """The joint write failed: an answer put in the cache for it points nowhere; drop it."""
    if claim.body_in_cache:
        with contextlib.suppress(*STORE_ERRORS):  # else it expires with the key's lifetime
            cache.delete(_cache_key(claim))


def _give_back(claim: Claim) -> None:
    IdempotencyRecord.objects.filter(pk=claim.record_id, token=claim.token).delete()


def _begin(request: Request, *, lease: timedelta, texts: bool) -> Claim | HttpResponse | None:
    """None without a key; else the claim to run under, or the answer to give instead."""
    key = request.META.get(HEADER)
    if key is None:
        return None
    if not _KEY.match(key):
        raise InvalidInput(details={"Idempotency-Key": ["Expected 1 to 255 printable ASCII characters."]})
    fingerprint = _fingerprint(request)
    cache_lost = False
    for _attempt in range(3):  # a key given back or expired between the claim and the read: claim again
        found = _claim_or_find(
            user_id=request.user.pk,
            key=key,
            fingerprint=fingerprint,
            lease=lease,
            cache_lost=cache_lost,
            body_in_cache=texts and not settings.STORE_TEXTS,
        )
        if isinstance(found, Claim):
            return found
        if found is None:
            continue
        if found.fingerprint != fingerprint:
            raise IdempotencyKeyReused()
        if found.state == IdempotencyRecord.State.RUNNING:
            raise RequestInProgress()
        replay = _replay(found)
        if replay is not None:
            return replay
        cache_lost = True
    raise RequestInProgress()


def idempotent(*, lease_setting: str | Callable[[], str], texts: bool = False) -> Callable:
    """A creating view method that honours `Idempotency-Key` (see the module's docstring).

    `lease_setting` names the setting of how many seconds a claim may run before it counts as
    cut off and can be taken by a retry; `texts` says whether the answer holds texts (kept out
    of the database when STORE_TEXTS is off).
    """

    def decorate(handler: Callable) -> Callable:
        @functools.wraps(handler)
        def run(view: Any, request: Request, *args: Any, **kwargs: Any) -> Any:
            name = lease_setting() if callable(lease_setting) else lease_setting
            lease = timedelta(seconds=getattr(settings, name))
            claim = _begin(request, lease=lease, texts=texts)
            if claim is None:
                return handler(view, request, *args, **kwargs)
            if isinstance(claim, HttpResponse):
                return claim
            try:
                response = handler(view, request, *args, **kwargs)
            except BaseException:
                _give_back(claim)
                raise
            settle = WriteWithLog(
                functools.partial(_settle, claim), undo=functools.partial(_forget_cached_answer, claim)
            )
            if not write_with_request_log(request, settle):
                logger.warning("idempotent answer not recorded: the request is not logged")
                _give_back(claim)
            return response

        return run

    return decorate


def purge_expired(*, now: Any = None, batch: int = 10_000) -> int:
    """Delete keys past their lifetime; returns how many."""
    deleted = 0
    while True:
        ids = list(
            IdempotencyRecord.objects.filter(expires_at__lte=now or timezone.now()).values_list("id", flat=True)[:batch]
        )
        if not ids:
            return deleted
        deleted += IdempotencyRecord.objects.filter(id__in=ids).delete()[0]
