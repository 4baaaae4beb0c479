"""`Idempotency-Key` on the creating POSTs: a retried request gets the first answer again.

Before the request runs, its key is claimed for the caller in one statement (the one extra round
trip): a new key, an expired one, or a claim whose request was cut off (a worker killed mid-way,
its lease over) is taken; otherwise the row says what to answer instead: the first answer again
when it is done and the body is the same (`Idempotent-Replayed: true`), 409 while it is still
running, 422 when the body differs. A request that does not succeed gives its key back, so a
retry runs it again.

The answer is stored as soon as it is known: on the prediction route in the same statement and
commit as the prediction itself (inference/fast_path.py), and only while the request still holds
its key, so a prediction whose answer was lost is never made twice; on the other routes right
after their own records, once the answer (or the stream) is complete.

With STORE_TEXTS off, the answers of the text routes (which hold texts) are kept in the shared
cache for the key's lifetime instead of the database; one the cache lost is run again.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import logging
import re
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import orjson
from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.http import HttpResponse, HttpResponseBase, StreamingHttpResponse
from django.utils import timezone
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.permissions import authenticated_user
from inference.models import IdempotencyRecord
from project.cache import STORE_ERRORS
from project.context import context_of
from project.errors import AppError, InvalidInput, ServiceUnavailable
from project.http import IDEMPOTENCY_KEY_HEADER as HEADER
from project.http import streamed_parts
from project.json import dumps

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
    match = request._request.resolver_match
    # The route's name and its path's parameters (the OIP routes name the model in the path).
    route = (match.view_name + (f" {sorted(match.kwargs.items())}" if match.kwargs else "")) if match else request.path
    data = request.data
    # A body that is not JSON (the OIP's binary tensors) says what identifies it.
    canonical = getattr(data, "fingerprint_bytes", None)
    body = (
        canonical()
        if canonical is not None
        else orjson.dumps(data, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS)
    )
    key = hashlib.sha256(f"idempotency:{settings.SECRET_KEY}".encode()).digest()
    return hmac.new(key, f"{request.method} {route}\n".encode() + body, hashlib.sha256).hexdigest()


_CLAIM_SQL = f"""
INSERT INTO {_TABLE} AS taken (user_id, key, fingerprint, token, state, locked_until, status, content_type,
                               body, created_at, expires_at)
VALUES (%s, %s, %s, %s, 'running', %s, NULL, '', NULL, %s, %s)
ON CONFLICT (user_id, key) DO UPDATE SET
    fingerprint = EXCLUDED.fingerprint, token = EXCLUDED.token, state = 'running',
    locked_until = EXCLUDED.locked_until, status = NULL, content_type = '', headers = NULL, body = NULL,
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
    with connection.cursor() as cursor:
        cursor.execute(_CLAIM_SQL, [user_id, key, fingerprint, token, now + lease, now, now + _lifetime(), cache_lost])
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
    for name, value in (record.headers or {}).items():
        response[name] = value
    response["Idempotent-Replayed"] = "true"
    return response


def _store(claim: Claim, *, status: int, content_type: str, body: bytes) -> None:
    """Keep a successful answer for the key (only while this request still holds it)."""
    kept: bytes | None = body
    if claim.body_in_cache:
        try:
            cache.set(_cache_key(claim), body, timeout=int(_lifetime().total_seconds()))
        except STORE_ERRORS as exc:  # nowhere to keep it: the key is given back instead
            logger.warning("idempotent answer not kept: the cache is unavailable (%s)", exc.__class__.__name__)
            _give_back(claim)
            return
        kept = None
    stored = IdempotencyRecord.objects.filter(pk=claim.record_id, token=claim.token).update(
        state=IdempotencyRecord.State.DONE, status=status, content_type=content_type[:100], body=kept
    )
    if not stored:  # it ran past its lease and a retry took the key: that retry's answer stands
        logger.warning("idempotency key %s was taken by a retry before its first request finished", claim.record_id)


def _give_back(claim: Claim) -> None:
    IdempotencyRecord.objects.filter(pk=claim.record_id, token=claim.token).delete()


def stored_with_write(claim: Claim) -> tuple[int, str]:
    """For a route that stores the answer in its own write (the prediction route): the claim's
    row and token, to update in that statement only if it still holds the key."""
    return claim.record_id, claim.token


def _settle_when_answered(
    request: Request, claim: Claim, response: HttpResponse | StreamingHttpResponse
) -> HttpResponse | StreamingHttpResponse:
    """Store the answer once it is complete (a stream: once it has been sent), or give the key back."""
    context = context_of(request)
    if not isinstance(response, StreamingHttpResponse):
        body = dumps(response.data) if isinstance(response, Response) else response.content
        if 200 <= response.status_code < 300:
            _store(claim, status=response.status_code, content_type=_content_type(response), body=body)
        else:
            _give_back(claim)
        return response

    def kept_when_finished(content: Iterator[bytes]) -> Iterator[bytes]:
        parts: list[bytes] = []
        finished = False
        try:
            for part in content:
                parts.append(part)
                yield part
            finished = True
        finally:
            if finished and context.failed_status is None and 200 <= response.status_code < 300:
                _store(claim, status=response.status_code, content_type=_content_type(response), body=b"".join(parts))
            else:
                _give_back(claim)

    response.streaming_content = kept_when_finished(streamed_parts(response))
    return response


def _content_type(response: HttpResponseBase) -> str:
    return "application/json" if isinstance(response, Response) else response.get("Content-Type", "")


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
            user_id=authenticated_user(request).pk,
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
            context = context_of(request)
            context.idempotency_claim = claim
            try:
                response = handler(view, request, *args, **kwargs)
            except BaseException:
                _give_back(claim)
                raise
            if context.idempotency_settled:  # stored with the request's own write
                return response
            return _settle_when_answered(request, claim, response)

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
