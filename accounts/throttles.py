"""DRF throttle classes that apply accounts.ratelimits to views.

Every API view is limited (DEFAULT_THROTTLE_CLASSES); a view joins a more expensive group by
setting `rate_limit_group`. The usage is left on the request for RateLimitHeadersMiddleware.
"""

from __future__ import annotations

from typing import Any

from rest_framework.request import Request
from rest_framework.throttling import BaseThrottle

from accounts.models import ApiKey
from accounts.ratelimits import Usage, client_key, group_rate, per_second, rate_limit_hit, rate_limit_undo
from project import freshness

USAGE_ATTR = "rate_limit_usage"
_COUNTED_AHEAD_ATTR = "_rate_limit_counted_ahead"


def _remember(request: Request, usage: Usage | None) -> None:
    if usage is None:
        return
    django_request = request._request
    current: Usage | None = getattr(django_request, USAGE_ATTR, None)
    # With several limits on one request, the headers describe the tightest.
    if current is None or usage.limited or (not current.limited and usage.remaining < current.remaining):
        setattr(django_request, USAGE_ATTR, usage)


def limit_subject(*, view: Any, api_key: ApiKey | None, user_pk: Any, request: Request) -> tuple[str, str, str]:
    """(group, who, rate) a request is counted under: per API key when one was used, else per
    user, else per client address; a key's own rate replaces the default and, on costlier
    groups, can only tighten."""
    group = getattr(view, "rate_limit_group", "default")
    rate = group_rate(group)
    if api_key is not None:
        own = api_key.rate
        if own and (group == "default" or per_second(own) < per_second(rate)):
            rate = own
        return group, f"key:{api_key.pk}", rate
    if user_pk is not None:
        return group, f"user:{user_pk}", rate
    return group, client_key(request._request), rate


def count_ahead(request: Request, *, api_key: ApiKey | None = None, user_pk: Any = None) -> None:
    """Count this request now, reading the freshness stamps in the same Redis round trip.

    Called by the authentication classes, which need the stamps and know who is asking before
    anyone has checked it: the count is remembered, and UserRateThrottle uses it if it comes to
    the same (group, who, rate), instead of a second round trip. A request that never reaches
    the throttle (refused by authentication or permissions), or reaches it as someone else,
    gets the count taken back (`undo_counted_ahead`): only what the throttle sees is charged.
    """
    view = (request.parser_context or {}).get("view")
    if UserRateThrottle not in getattr(view, "throttle_classes", ()):
        freshness.stamps_for(request)  # this view counts otherwise (or not at all)
        return
    subject = limit_subject(view=view, api_key=api_key, user_pk=user_pk, request=request)
    group, who, rate = subject
    usage = rate_limit_hit(request=request._request, group=group, who=who, rate=rate, read_stamps=True)
    if usage is not None:
        setattr(request._request, _COUNTED_AHEAD_ATTR, (subject, usage))


def undo_counted_ahead(request: Request) -> None:
    """Take back a count made ahead that no throttle used (see count_ahead)."""
    ahead = request._request.__dict__.pop(_COUNTED_AHEAD_ATTR, None)
    if ahead is not None:
        rate_limit_undo(ahead[1])


class _Throttle(BaseThrottle):
    def __init__(self) -> None:
        self._wait: float | None = None

    def _hit(self, request: Request, *, group: str, who: str, rate: str) -> bool:
        ahead = request._request.__dict__.pop(_COUNTED_AHEAD_ATTR, None)
        if ahead is not None and ahead[0] == (group, who, rate):
            usage = ahead[1]
        else:
            if ahead is not None:  # counted ahead as someone else, e.g. a key whose rate just changed
                rate_limit_undo(ahead[1])
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
        api_key = request.auth if isinstance(request.auth, ApiKey) else None
        user = request.user
        user_pk = user.pk if user is not None and user.is_authenticated else None
        group, who, rate = limit_subject(view=view, api_key=api_key, user_pk=user_pk, request=request)
        return self._hit(request, group=group, who=who, rate=rate)


class LoginRateThrottle(_Throttle):
    """The token routes, per client address: every request, right or wrong, so that one address
    cannot keep the password hasher busy. Failed logins are counted apart (accounts.login_guard)."""

    def allow_request(self, request: Request, view: Any) -> bool:
        return self._hit(request, group="login-ip", who=client_key(request._request), rate=group_rate("login-ip"))
