"""Writing the request log: one row per /api/, /v1/ and /v2/models/ request, from the request's context."""

from __future__ import annotations

import logging
import time
from typing import Any

from django.db import DatabaseError
from django.http import HttpRequest, HttpResponseBase

from accounts.models import ApiKey
from analytics.histogram import bin_of
from analytics.models import RequestLog
from project import metrics
from project.context import api_caller, context_of
from project.http import client_ip
from project.prices import cost_of

logger = logging.getLogger(__name__)

_MAX_INT = 2**31 - 1  # the size columns are PostgreSQL integers


def note_usage(
    request: HttpRequest,
    *,
    model: str = "",
    version: int | None = None,
    rows: int = 0,
    prompt_tokens: int = 0,
    completion_tokens: int = 0,
) -> None:
    """Let a view (or a stream, when it ends) say what a request used, for its request-log row."""
    context = context_of(request)
    context.model, context.model_version, context.rows = model, version, rows
    context.prompt_tokens, context.completion_tokens = prompt_tokens, completion_tokens


def note_failure(request: HttpRequest, *, status: int, code: str) -> None:
    """Say that a request failed after its status line was sent (a stream that broke, or whose
    client went away): its request-log row records this status and code, not the 200 sent first."""
    context = context_of(request)
    context.failed_status, context.failed_code = status, code


def _text(value: str, limit: int) -> str:
    # PostgreSQL text cannot hold NUL; a client-chosen path or user agent must not lose the row.
    return value.replace("\x00", "\ufffd")[:limit]


def _content_length(request: HttpRequest) -> int:
    try:
        # Clamped to the column: a client-claimed length must not lose the row.
        return min(max(int(request.META.get("CONTENT_LENGTH") or 0), 0), _MAX_INT)
    except ValueError:
        return 0


def request_log_values(
    request: HttpRequest, *, status: int, error_code: str, response_bytes: int, latency_ms: float
) -> dict[str, Any]:
    """The columns of one request's log row (by attribute name), from the request and its context.

    Who made the call is what an API authentication class found (DRF puts `user` and `auth` on
    the Django request too): the session user of a browser also logged in to the admin is not it.
    """
    django_request: HttpRequest = getattr(request, "_request", request)
    context = context_of(django_request)
    user, auth = api_caller(django_request)
    api_key_id = auth.pk if isinstance(auth, ApiKey) else None
    auth_method = "api_key" if api_key_id is not None else ("jwt" if auth is not None else "")
    match = django_request.resolver_match
    cost = cost_of(context.model, context.prompt_tokens, context.completion_tokens)
    return {
        "request_id": context.request_id,
        "created_at": context.started_at,
        "method": _text(django_request.method or "", 10),
        "path": _text(django_request.path, 255),
        "endpoint": (match.view_name if match else "")[:100],
        "status": status,
        "error_code": error_code[:50],
        "latency_ms": latency_ms,
        "latency_bin": bin_of(latency_ms),
        "user_id": user.pk if user is not None and user.is_authenticated else None,
        "auth_method": auth_method,
        "api_key_id": api_key_id,
        "client_ip": client_ip(django_request) or None,
        "user_agent": _text(django_request.META.get("HTTP_USER_AGENT", ""), 256),
        "request_bytes": _content_length(django_request),
        "response_bytes": min(response_bytes, _MAX_INT),
        "model": context.model[:100],
        "model_version": context.model_version,
        "rows": context.rows,
        "prompt_tokens": context.prompt_tokens,
        "completion_tokens": context.completion_tokens,
        "cost": cost.amount,
        "unpriced_tokens": cost.unpriced_tokens,
    }


def request_log_create(
    request: HttpRequest, response: HttpResponseBase, *, response_bytes: int, latency_ms: float
) -> RequestLog | None:
    """Record one finished request (a stream's failure after its 200, as that failure's status).
    A failure to record is logged, never raised."""
    context = context_of(request)
    status, error_code = context.outcome(response)
    values = request_log_values(
        request, status=status, error_code=error_code, response_bytes=response_bytes, latency_ms=latency_ms
    )
    try:
        return RequestLog.objects.create(**values)
    except DatabaseError:
        metrics.REQUEST_LOG_FAILURES.inc()
        logger.exception("could not record request %s %s", request.method, request.path)
        return None


def elapsed_ms(request: HttpRequest) -> float:
    return (time.perf_counter() - context_of(request).started) * 1000
