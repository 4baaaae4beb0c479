from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponseBase

from accounts.ratelimits import Usage
from accounts.throttles import USAGE_ATTR


class RateLimitHeadersMiddleware:
    """X-RateLimit-Limit/-Remaining/-Reset on every rate-limited answer, 429s included."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        response = self.get_response(request)
        usage: Usage | None = request.__dict__.get(USAGE_ATTR)
        if usage is not None:
            response["X-RateLimit-Limit"] = str(usage.limit)
            response["X-RateLimit-Remaining"] = str(usage.remaining)
            response["X-RateLimit-Reset"] = str(usage.reset_seconds)
            if usage.limited:
                response["Retry-After"] = str(usage.reset_seconds)
        return response
