"""DRF throttle classes that apply accounts.ratelimits to views.

Every API view is limited (DEFAULT_THROTTLE_CLASSES); a view joins a more expensive group by
setting `rate_limit_group`. The usage is left on the request for RateLimitHeadersMiddleware.
"""

from __future__ import annotations

from typing import Any

from rest_framework.request import Request
from rest_framework.throttling import BaseThrottle

from accounts.models import ApiKey
from accounts.ratelimits import Usage, client_key, group_rate, per_second, rate_limit_hit

USAGE_ATTR = "rate_limit_usage"


def _remember(request: Request, usage: Usage | None) -> None:
    if usage is None:
        return
    django_request = request._request
    current: Usage | None = getattr(django_request, USAGE_ATTR, None)
    # With several limits on one request, the headers describe the tightest.
    if current is None or usage.limited or (not current.limited and usage.remaining < current.remaining):
        setattr(django_request, USAGE_ATTR, usage)


class _Throttle(BaseThrottle):
    def __init__(self) -> None:
        self._wait: float | None = None

    def _hit(self, request: Request, *, group: str, who: str, rate: str) -> bool:
        usage = rate_limit_hit(request=request._request, group=group, who=who, rate=rate)
        _remember(request, usage)
        if usage is not None and usage.limited:
            self._wait = max(self._wait or 0, usage.reset_seconds)
            return False
        return True

    def wait(self) -> float | None:
        return self._wait


class UserRateThrottle(_Throttle):
    """Per API key when one was used, else per user, else per client address."""

    def allow_request(self, request: Request, view: Any) -> bool:
        group = getattr(view, "rate_limit_group", "default")
        rate = group_rate(group)
        if isinstance(request.auth, ApiKey):
            who = f"key:{request.auth.pk}"
            own = request.auth.rate
            # A key's own rate replaces the default; on costlier groups it can only tighten.
            if own and (group == "default" or per_second(own) < per_second(rate)):
                rate = own
        elif request.user is not None and request.user.is_authenticated:
            who = f"user:{request.user.pk}"
        else:
            who = client_key(request._request)
        return self._hit(request, group=group, who=who, rate=rate)


class LoginRateThrottle(_Throttle):
    """The token routes: per client address, and per username tried (against guessing)."""

    def allow_request(self, request: Request, view: Any) -> bool:
        allowed = self._hit(request, group="login-ip", who=client_key(request._request), rate=group_rate("login-ip"))
        data = request.data if isinstance(request.data, dict) else {}
        username = data.get("username")
        if isinstance(username, str) and username:
            who = f"username:{username.strip().lower()[:150]}"
            allowed = self._hit(request, group="login-username", who=who, rate=group_rate("login-username")) and allowed
        return allowed
