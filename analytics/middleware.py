from __future__ import annotations

import time
import uuid
from collections.abc import Callable

from django.http import HttpRequest, HttpResponseBase
from django.utils import timezone

from analytics.recording import (
    Recorded,
    answer_of,
    recorded_when_finished,
    request_log_create,
    start_writes_with_log,
)
from project.error_handlers import json_error
from project.errors import DatabaseUnavailable

RECORDED_PREFIXES = ("/api/", "/v1/")


class RequestLogMiddleware:
    """Times every API request and records it once its answer is ready.

    It sits first in MIDDLEWARE, so every answer passes through it — errors included, since
    Django turns exceptions into responses before they reach here. The row is written in
    autocommit, outside any transaction the request opened, so it survives a failed request,
    together with the writes the request left to be made with it (analytics.recording.WriteWithLog:
    a prediction, an idempotent answer) in one statement. A streamed answer is recorded when the
    stream ends, with its full duration.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        if not request.path.startswith(RECORDED_PREFIXES):
            return self.get_response(request)
        request_id = uuid.uuid4()
        started_at = timezone.now()
        started = time.perf_counter()
        writes = start_writes_with_log(request)
        response = self.get_response(request)

        def record(answered: HttpResponseBase, size: int, body: bytes | None, latency_ms: float) -> Recorded:
            answer, error_code = answer_of(request, answered, size=size, body=body)
            return request_log_create(
                request=request,
                answer=answer,
                error_code=error_code,
                request_id=request_id,
                started_at=started_at,
                latency_ms=latency_ms,
                writes=writes,
            )

        if response.streaming:
            response.streaming_content = recorded_when_finished(
                response.streaming_content,
                record=lambda size, body, latency_ms: record(response, size, body, latency_ms),
                started=started,
                keep_body=bool(writes),
            )
        else:
            latency_ms = (time.perf_counter() - started) * 1000
            recorded = record(response, len(response.content), response.content, latency_ms)
            if recorded.promised_write_lost:
                # The answer promised a stored row that is not stored: it must not leave as a success.
                response = json_error(request, 503, DatabaseUnavailable.code, DatabaseUnavailable.default_message)
                # Nothing of the joint statement was written; the request still gets its log row,
                # as the 503 it was answered with, with the writes that go with a failure (if the
                # database takes it: failures are logged).
                record(response, len(response.content), response.content, latency_ms)
        response["X-Request-ID"] = str(request_id)
        return response
