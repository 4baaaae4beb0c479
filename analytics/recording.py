"""Writing the request log."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import DatabaseError, connection
from django.db.models import Model
from django.http import HttpRequest, HttpResponseBase

from analytics.histogram import bin_of
from analytics.models import RequestLog
from project import db
from project.http import client_ip

logger = logging.getLogger(__name__)

_USAGE_ATTR = "_usage_note"
_FAILURE_ATTR = "_failure_note"
_WRITES_ATTR = "_writes_with_request_log"


def note_usage(
    request: HttpRequest, *, model: str = "", rows: int = 0, prompt_tokens: int = 0, completion_tokens: int = 0
) -> None:
    """Let a view (or a stream, when it ends) say what a request used, for its request-log row."""
    django_request = getattr(request, "_request", request)  # a DRF Request, or Django's own
    setattr(
        django_request,
        _USAGE_ATTR,
        {"model": model, "rows": rows, "prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens},
    )


def note_failure(request: HttpRequest, *, status: int, code: str) -> None:
    """Say that a request failed after its status line was sent (a stream that broke, or whose
    client went away): its request-log row records this status and code, not the 200 sent first."""
    django_request = getattr(request, "_request", request)
    setattr(django_request, _FAILURE_ATTR, (status, code))


@dataclass(frozen=True)
class Answer:
    """What a request was answered: its status (a failed stream's, see note_failure), type, size,
    and its bytes where they were kept (a stream's only when a write needs them)."""

    status: int
    content_type: str
    size: int
    body: bytes | None


@dataclass(frozen=True)
class WriteWithLog:
    """A write that belongs with a request's log row, made in the same commit once the answer is
    known: `statement(answer)` gives the SQL (or None for nothing to write). A `required` write
    is one the answer promises (a stored prediction): when it fails, the answer becomes a 503.
    `undo` is told when the joint write failed (to drop what was kept elsewhere for it)."""

    statement: Callable[[Answer], db.Statement | None]
    required: bool = False
    undo: Callable[[], None] | None = None


def write_with_request_log(request: HttpRequest, write: WriteWithLog) -> bool:
    """Have `write` made with this request's log row. False when the request is not recorded
    (not an API route): the caller writes on its own."""
    django_request = getattr(request, "_request", request)
    writes: list[WriteWithLog] | None = django_request.__dict__.get(_WRITES_ATTR)
    if writes is None:
        return False
    writes.append(write)
    return True


def store_with_request_log(request: HttpRequest) -> Callable[[Model], None]:
    """How a view's service should save its one new row: with this request's log row.

    On PostgreSQL, when RequestLogMiddleware records this request, the row gets its id now and
    is written by the middleware in the same statement as the log row, once the answer is ready
    and before it leaves: one round trip and one commit for both, and the middleware answers 503
    instead if that write fails. Elsewhere the row is inserted at once.
    """
    if connection.vendor != "postgresql":
        return db.insert

    def store(instance: Model) -> None:
        instance.pk = db.reserve_id(type(instance))
        # A row belongs to a successful answer only.
        write = WriteWithLog(lambda answer: db.insert_statement_of(instance) if answer.status < 400 else None, True)
        if not write_with_request_log(request, write):
            db.insert(instance)

    return store


def start_writes_with_log(request: HttpRequest) -> list[WriteWithLog]:
    writes: list[WriteWithLog] = []
    setattr(request, _WRITES_ATTR, writes)
    return writes


def _text(value: str, limit: int) -> str:
    # PostgreSQL text cannot hold NUL; a client-chosen path or user agent must not lose the row.
    return value.replace("\x00", "\ufffd")[:limit]


def _content_length(request: HttpRequest) -> int:
    try:
        # Clamped to the column: a client-claimed length must not lose the row.
        return min(max(int(request.META.get("CONTENT_LENGTH") or 0), 0), 2**31 - 1)
    except ValueError:
        return 0


@dataclass(frozen=True)
class Recorded:
    row: RequestLog | None  # None: the database did not take it (the failure is logged)
    promised_write_lost: bool = False  # a required WriteWithLog was in the statement that failed


def request_log_create(
    *,
    request: HttpRequest,
    answer: Answer,
    request_id: uuid.UUID,
    started_at: datetime,
    latency_ms: float,
    error_code: str = "",
    writes: list[WriteWithLog] = (),
) -> Recorded:
    """Record one finished request, with the writes that belong with it (WriteWithLog), in one
    statement. A failure to record is logged, never raised."""
    # Only an API authentication class sets auth_method; the session user of a browser that
    # is also logged in to the admin is not who made an API call.
    auth_method = request.__dict__.get("auth_method", "")
    user = request.__dict__.get("user") if auth_method else None
    match = request.resolver_match
    usage: dict[str, Any] = request.__dict__.get(_USAGE_ATTR, {})
    statements = [(write, statement) for write in writes if (statement := write.statement(answer)) is not None]
    row = RequestLog(
        request_id=request_id,
        created_at=started_at,
        method=_text(request.method, 10),
        path=_text(request.path, 255),
        endpoint=(match.view_name if match else "")[:100],
        status=answer.status,
        error_code=error_code[:50],
        latency_ms=latency_ms,
        latency_bin=bin_of(latency_ms),
        user=user if user is not None and user.is_authenticated else None,
        auth_method=auth_method,
        api_key_id=request.__dict__.get("api_key_id"),
        client_ip=client_ip(request) or None,
        user_agent=_text(request.META.get("HTTP_USER_AGENT", ""), 256),
        request_bytes=_content_length(request),
        response_bytes=min(answer.size, 2**31 - 1),
        model=usage.get("model", "")[:100],
        rows=usage.get("rows", 0),
        prompt_tokens=usage.get("prompt_tokens", 0),
        completion_tokens=usage.get("completion_tokens", 0),
    )
    if not statements:
        return _insert_logged(row, request)
    try:
        db.insert_after([statement for _, statement in statements], row)
        return Recorded(row)
    except DatabaseError:
        logger.exception("could not record request %s %s with its writes", request.method, request.path)
    for write, _ in statements:
        if write.undo is not None:
            write.undo()
    if any(write.required for write, _ in statements):
        return Recorded(None, promised_write_lost=True)  # the caller answers 503 and records that
    return _insert_logged(row, request)  # the answer stands; its row is still recorded


def _insert_logged(row: RequestLog, request: HttpRequest) -> Recorded:
    try:
        db.insert(row)
        return Recorded(row)
    except DatabaseError:
        logger.exception("could not record request %s %s", request.method, request.path)
        return Recorded(None)


def answer_of(request: HttpRequest, response: HttpResponseBase, *, size: int, body: bytes | None) -> tuple[Answer, str]:
    """The answer a request got (a stream that failed after its 200: the failure's status), and its error code."""
    failure = request.__dict__.get(_FAILURE_ATTR)
    status, code = failure or (response.status_code, getattr(response, "error_code", ""))
    return Answer(status=status, content_type=response.get("Content-Type", ""), size=size, body=body), code


def recorded_when_finished(
    content: Iterator[bytes], *, record: Callable[[int, bytes | None, float], Any], started: float, keep_body: bool
) -> Iterator[bytes]:
    """Pass a streamed body through and record the request once it has been sent (or abandoned),
    so its row has the whole duration, the bytes sent and the tokens the stream reported. The
    bytes themselves are kept only when a write needs them (an idempotent answer to replay)."""
    parts: list[bytes] = []
    sent = 0
    try:
        for part in content:
            sent += len(part)
            if keep_body:
                parts.append(part)
            yield part
    finally:
        # A client that went away: the server closes the response, and Django closes its iterators
        # in the order they were set, the view's stream before this one. So the stream's own
        # ending (what it recorded, how it failed) is known when its log row is written
        # (tests/inference/test_stream_disconnect.py).
        record(sent, b"".join(parts) if keep_body else None, (time.perf_counter() - started) * 1000)
