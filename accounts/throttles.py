"""DRF throttles over accounts.ratelimits (django-ratelimit's counters).

Every API view is limited (DEFAULT_THROTTLE_CLASSES); a view joins a costlier group by setting
`rate_limit_group`. The usage goes into the request context, for RateLimitHeadersMiddleware.
"""

from __future__ import annotations

from typing import Any

from rest_framework.request import Request
from rest_framework.throttling import BaseThrottle

from accounts.models import ApiKey
from accounts.ratelimits import client_key, count, group_rate, subject, subject_rate
from project import metrics
from project.context import context_of


class _CountingThrottle(BaseThrottle):
    def __init__(self) -> None:
        self._wait: float | None = None

    def _allowed(self, request: Request, *, group: str, who: str, rate: str) -> bool:
        usage = count(request._request, group=group, who=who, rate=rate)
        context_of(request).note_rate_usage(usage)
        if usage is not None and usage.limited:
            self._wait = usage.reset_seconds
            metrics.count_refusal(group)
            return False
        return True

    def wait(self) -> float | None:
        return self._wait


class UserRateThrottle(_CountingThrottle):
    """Per API key when one was used, else per user, else per client address."""

    def allow_request(self, request: Request, view: Any) -> bool:
        group = getattr(view, "rate_limit_group", "default")
        api_key = request.auth if isinstance(request.auth, ApiKey) else None
        user = request.user
        user_pk = user.pk if user is not None and user.is_authenticated else None
        who = subject(api_key=api_key, user_pk=user_pk, request=request._request)
        return self._allowed(request, group=group, who=who, rate=subject_rate(group, api_key))


class LoginRateThrottle(_CountingThrottle):
    """The token routes, per client address: every request, right or wrong, so that one address
    cannot keep the password hasher busy. Failed logins are counted apart (accounts.login_guard)."""

    def allow_request(self, request: Request, view: Any) -> bool:
        return self._allowed(request, group="login-ip", who=client_key(request._request), rate=group_rate("login-ip"))
