from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponseBase

from analytics.recording import elapsed_ms, recorded_when_finished, request_log_create
from project.context import context_of

RECORDED_PREFIXES = ("/api/", "/v1/")


class RequestLogMiddleware:
    """Starts every request's context and logs every API request once its answer is ready.

    It sits first in MIDDLEWARE, so it times and sees every answer below it, errors included
    (Django turns exceptions into responses before they reach here). The row is written in
    autocommit, outside any transaction the request opened, so it survives a failed request. A
    streamed answer is logged when the stream ends, with its full duration. The prediction route
    writes its own row, in the same commit as its prediction (inference/fast_path.py); then the
    context says so and nothing is written here.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        context = context_of(request)  # started here: the clock, the request id
        response = self.get_response(request)
        response["X-Request-ID"] = str(context.request_id)
        if not request.path.startswith(RECORDED_PREFIXES) or context.logged:
            return response
        if response.streaming:
            response.streaming_content = recorded_when_finished(
                response.streaming_content,
                record=lambda sent: request_log_create(
                    request, response, response_bytes=sent, latency_ms=elapsed_ms(request)
                ),
            )
        else:
            request_log_create(request, response, response_bytes=len(response.content), latency_ms=elapsed_ms(request))
        return response
