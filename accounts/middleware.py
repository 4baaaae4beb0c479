from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponseBase

from project.context import context_of


class RateLimitHeadersMiddleware:
    """X-RateLimit-Limit/-Remaining/-Reset on every rate-limited answer, 429s included."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        response = self.get_response(request)
        usage = context_of(request).rate_usage
        if usage is not None:
            response["X-RateLimit-Limit"] = str(usage.limit)
            response["X-RateLimit-Remaining"] = str(usage.remaining)
            response["X-RateLimit-Reset"] = str(usage.reset_seconds)
            if usage.limited:
                response["Retry-After"] = str(usage.reset_seconds)
        return response
