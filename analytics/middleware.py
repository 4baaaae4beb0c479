from __future__ import annotations

import functools
import time
import uuid
from collections.abc import Callable

from django.http import HttpRequest, HttpResponseBase
from django.utils import timezone

from analytics.recording import recorded_when_finished, request_log_create

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
        response = self.get_response(request)
        response["X-Request-ID"] = str(request_id)
        record = functools.partial(
            request_log_create, request=request, response=response, request_id=request_id, started_at=started_at
        )
        if response.streaming:
            response.streaming_content = recorded_when_finished(
                response.streaming_content, record=record, started=started
            )
        else:
            record(latency_ms=(time.perf_counter() - started) * 1000, response_bytes=len(response.content))
        return response
