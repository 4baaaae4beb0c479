"""Every request's id, its log line and its metrics, in the outermost middleware.

- **The request id**: a client's (or proxy's) own `X-Request-ID` when it is a UUID (dashed, or
  the 32 hex digits nginx's $request_id gives), else a new one. It is echoed in the answer,
  stored in the request's log row, and put on every log line the request writes (project.logs).
  Only UUIDs are taken because the request log stores the id as one (16 bytes, indexed); any
  other value gets a new id, never an error.
- **One log line per request** (logger `mlserve.request`, LOG_REQUESTS): method, path, route,
  status, latency, user, key prefix, model and rows; never a body, query string or credential.
- **Metrics** (project.metrics): requests by route, method and status, and latency.

A streamed answer is counted and logged when its last byte has gone (or its client went away),
with the status its log row records.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

from django.conf import settings
from django.db import connection
from django.http import HttpRequest, HttpResponse, HttpResponseBase, StreamingHttpResponse

from project import logs, metrics
from project.context import RequestContext, api_caller, context_of
from project.http import streamed_parts, when_sent

logger = logging.getLogger("mlserve.request")

POOL_SAMPLE_SECONDS = 1.0  # the pool gauges need not move on every request
_pool_sampled_at = 0.0


def inbound_request_id(value: str | None) -> uuid.UUID | None:
    if not value or len(value) > 36:
        return None
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


class RequestTelemetryMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        context = context_of(request)  # started here: the clock
        inbound = inbound_request_id(request.META.get("HTTP_X_REQUEST_ID"))  # not request.headers: built per request
        if inbound is not None:
            context.request_id = inbound
        # Bound for this thread until its next request, not just until this method returns:
        # Django writes its own line for a 4xx or 5xx answer (BaseHandler.log_response) after
        # the middleware has returned, and that line should carry the id too.
        logs.bind_request_id(str(context.request_id))
        # Before this request takes a pooled connection, so the sample does not count its own.
        _sample_pool()
        response = self.get_response(request)
        response["X-Request-ID"] = str(context.request_id)
        if isinstance(response, StreamingHttpResponse):
            response.streaming_content = _observed_stream(streamed_parts(response), request, response, context)
        else:
            size = len(response.content) if isinstance(response, HttpResponse) else 0
            _observe(request, response, context, response_bytes=size)
        return response


def _observed_stream(
    content: Iterator[bytes], request: HttpRequest, response: HttpResponseBase, context: RequestContext
) -> Iterator[bytes]:
    # The server sends a stream after the middleware has returned, maybe from another thread:
    # lines logged while it runs (an upstream failing midway) carry the request's id too.
    logs.bind_request_id(str(context.request_id))
    yield from when_sent(content, then=lambda sent: _observe(request, response, context, response_bytes=sent))


def _observe(request: HttpRequest, response: HttpResponseBase, context: RequestContext, *, response_bytes: int) -> None:
    seconds = time.perf_counter() - context.started
    status, error_code = context.outcome(response)
    route = metrics.route_of(request)
    metrics.observe_request(route=route, method=request.method or "", status=status, seconds=seconds)
    metrics.observe_usage(
        model=context.model,
        prompt_tokens=context.prompt_tokens,
        completion_tokens=context.completion_tokens,
        error_code=error_code,
    )
    if settings.LOG_REQUESTS:
        logger.info(
            "%s %s %s %.1f ms",
            request.method,
            request.path,
            status,
            seconds * 1000,
            extra={
                "method": request.method,
                "path": request.path,
                "route": route,
                "status": status,
                "error_code": error_code,
                "latency_ms": round(seconds * 1000, 2),
                "user": _user(request),
                "key_prefix": _key_prefix(request),
                "model": context.model,
                "rows": context.rows,
                "response_bytes": response_bytes,
            },
        )


def _user(request: HttpRequest) -> str:
    # Never the session's lazy user of other routes: evaluated after the answer is made, it would
    # cost queries, and a 500 with the database down.
    user, _ = api_caller(request)
    return user.get_username() if user is not None and getattr(user, "is_authenticated", False) else ""


def _key_prefix(request: HttpRequest) -> str:
    # The API key the request authenticated with, if any; its prefix is what the admin and the
    # key list show, never the key.
    _, auth = api_caller(request)
    prefix: Any = getattr(auth, "prefix", "")
    return prefix if isinstance(prefix, str) else ""


def _sample_pool() -> None:
    global _pool_sampled_at  # per process, by design
    now = time.monotonic()
    if now - _pool_sampled_at < POOL_SAMPLE_SECONDS:
        return
    _pool_sampled_at = now
    pool = getattr(connection, "pool", None) if connection.vendor == "postgresql" else None
    if pool is not None:
        metrics.observe_pool(pool.get_stats())
