from __future__ import annotations

import functools
import time
import uuid
from collections.abc import Callable

from django.http import HttpRequest, HttpResponseBase
from django.utils import timezone

from analytics.recording import recorded_when_finished, request_log_create, start_pending_rows
from project import db
from project.error_handlers import json_error
from project.errors import DatabaseUnavailable

RECORDED_PREFIXES = ("/api/", "/v1/")


class RequestLogMiddleware:
    """Times every API request and records it once its answer is ready.

    It sits first in MIDDLEWARE, so every answer passes through it — errors included, since
    Django turns exceptions into responses before they reach here. The row is written in
    autocommit, outside any transaction the request opened, so it survives a failed request.
    A streamed answer is recorded when the stream ends, with its full duration.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        if not request.path.startswith(RECORDED_PREFIXES):
            return self.get_response(request)
        request_id = uuid.uuid4()
        started_at = timezone.now()
        started = time.perf_counter()
        pending = start_pending_rows(request)
        response = self.get_response(request)
        # A row a view left to be written with the log row belongs to a successful answer only.
        with_row = pending[0] if pending and response.status_code < 400 else None
        record = functools.partial(
            request_log_create, request=request, response=response, request_id=request_id, started_at=started_at
        )
        if response.streaming:
            if with_row is not None:  # no log row to go with until the stream ends: not worth the wait
                db.insert(with_row)
            response.streaming_content = recorded_when_finished(
                response.streaming_content, record=record, started=started
            )
        else:
            latency_ms = (time.perf_counter() - started) * 1000
            written = record(latency_ms=latency_ms, response_bytes=len(response.content), with_row=with_row)
            if with_row is not None and written is None:
                # The answer promised a stored row that is not stored: it must not leave as a success.
                response = json_error(request, 503, DatabaseUnavailable.code, DatabaseUnavailable.default_message)
                # The joint statement wrote neither row; the request still gets its log row, as
                # the 503 it was answered with (if the database takes it: failures are logged).
                record(response=response, latency_ms=latency_ms, response_bytes=len(response.content))
        response["X-Request-ID"] = str(request_id)
        return response
