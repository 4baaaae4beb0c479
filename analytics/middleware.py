from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse, HttpResponseBase, StreamingHttpResponse

from analytics.recording import elapsed_ms, request_log_create
from project.context import context_of
from project.http import streamed_parts, when_sent

# The Open Inference Protocol's model routes, not its health probes (a probe every second is no usage).
RECORDED_PREFIXES = ("/api/", "/v1/", "/v2/models/")


class RequestLogMiddleware:
    """Logs every API request once its answer is ready.

    It sits near the top of MIDDLEWARE, under project.request_telemetry (which starts the
    request's context: its id and clock), so it sees every answer below it, errors included
    (Django turns exceptions into responses before they reach here). The row is written in
    autocommit, outside any transaction the request opened, so it survives a failed request. A
    streamed answer is logged when the stream ends, with its full duration. The prediction route
    writes its own row, in the same commit as its prediction (inference/fast_path.py); then the
    context says so and nothing is written here.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        context = context_of(request)
        response = self.get_response(request)
        if not request.path.startswith(RECORDED_PREFIXES) or context.logged:
            return response
        if isinstance(response, StreamingHttpResponse):
            # Recorded once sent, so the row has the whole duration, the bytes sent and the tokens
            # the stream reported; the view's stream, wrapped before this, has ended by then
            # (what it recorded, how it failed: tests/inference/test_stream_disconnect.py).
            response.streaming_content = when_sent(
                streamed_parts(response),
                then=lambda sent: request_log_create(
                    request, response, response_bytes=sent, latency_ms=elapsed_ms(request)
                ),
            )
        else:
            size = len(response.content) if isinstance(response, HttpResponse) else 0
            request_log_create(request, response, response_bytes=size, latency_ms=elapsed_ms(request))
        return response
