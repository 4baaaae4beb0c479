"""What the service learns about one request as it runs, in one typed place.

The outermost middleware (project.request_telemetry) starts it; authentication, throttles, views and streams fill it in;
the middleware (or the prediction route's own write) records it. Read and written through
`context_of`, never through attributes set on the request here and there.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.http import HttpRequest, HttpResponseBase
from django.utils import timezone

_ATTRIBUTE = "_mlserve_context"


@dataclass(frozen=True)
class RateUsage:
    """One rate-limit count, as the X-RateLimit-* headers tell it."""

    limit: int
    remaining: int
    reset_seconds: int
    limited: bool


@dataclass
class RequestContext:
    request_id: uuid.UUID = field(default_factory=uuid.uuid4)
    started_at: datetime = field(default_factory=timezone.now)
    started: float = field(default_factory=time.perf_counter)
    # The tightest rate limit this request was counted under (its headers).
    rate_usage: RateUsage | None = None
    # What it used, for its log row.
    model: str = ""
    model_version: int | None = None  # the version that answered (predictions)
    rows: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    # A failure after the status line had left (a stream that broke, a client that went away).
    failed_status: int | None = None
    failed_code: str = ""
    # True once the request's log row was written with the request's own write (the prediction
    # route writes it in the same commit as the prediction), so the middleware writes no other.
    logged: bool = False
    # Freshness stamps as this request read them (the prediction route's in-process copies).
    stamps: dict[str, str | None] | None = None
    # The Idempotency-Key this request holds (inference.idempotency.Claim), and whether its answer
    # was stored with the request's own write (the prediction route's).
    idempotency_claim: Any = None
    idempotency_settled: bool = False

    def outcome(self, response: HttpResponseBase) -> tuple[int, str]:
        """The status and error code the request ended with: a failure after the status line had
        left (a broken stream, a client gone) is what its log row and metrics count."""
        if self.failed_status is not None:
            return self.failed_status, self.failed_code
        return response.status_code, getattr(response, "error_code", "")

    def note_rate_usage(self, usage: RateUsage | None) -> None:
        """With several limits on one request, the headers describe the tightest."""
        if usage is None:
            return
        current = self.rate_usage
        if current is None or usage.limited or (not current.limited and usage.remaining < current.remaining):
            self.rate_usage = usage


def api_caller(request: HttpRequest) -> tuple[Any, Any]:
    """(user, auth) as an API authentication class found them (DRF puts both on the Django
    request too), or (None, None). Never the session's lazy user of other routes: evaluating it
    would cost queries, and a browser also logged in to the admin is not the API's caller."""
    auth = request.__dict__.get("auth")
    return (request.__dict__.get("user"), auth) if auth is not None else (None, None)


def context_of(request: Any) -> RequestContext:
    """The context of a Django or DRF request; made on first use for requests nothing started."""
    django_request: HttpRequest = getattr(request, "_request", request)
    context = django_request.__dict__.get(_ATTRIBUTE)
    if context is None:
        context = RequestContext()
        setattr(django_request, _ATTRIBUTE, context)
    return context
