"""System checks: a bad rate in the settings stops the start instead of failing requests."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core import checks

from accounts.ratelimits import rate_is_valid

GROUPS = ("default", "generation", "login-ip")


@checks.register(checks.Tags.security)
def check_rate_limits(app_configs: Any, **kwargs: Any) -> list[checks.CheckMessage]:
    errors = []
    for group in GROUPS:
        rate = settings.RATE_LIMITS.get(group)
        if rate is None or not rate_is_valid(rate):
            errors.append(
                checks.Error(
                    f"RATE_LIMITS[{group!r}] is {rate!r}: not a rate like '600/m'",
                    hint="A count, '/', then an optional multiplier of 1-999 and s, m, h or d.",
                    id="accounts.E001",
                )
            )
    for kind in ("username_address", "address", "username"):
        rate = settings.LOGIN_FAILURE_LIMITS.get(kind)
        if rate is None or not rate_is_valid(rate):
            errors.append(
                checks.Error(
                    f"LOGIN_FAILURE_LIMITS[{kind!r}] is {rate!r}: not a rate like '5/15m'",
                    hint="A count, '/', then an optional multiplier of 1-999 and s, m, h or d.",
                    id="accounts.E002",
                )
            )
    return errors
