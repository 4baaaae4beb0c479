"""System checks: a bad rate in the settings stops the start instead of failing requests."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core import checks

from accounts.ratelimits import rate_is_valid

GROUPS = ("default", "predictions", "generation", "login-ip")
LOGIN_FAILURE_KINDS = ("username_address", "address", "username")


@checks.register(checks.Tags.security)
def check_rate_limits(app_configs: Any, **kwargs: Any) -> list[checks.CheckMessage]:
    errors: list[checks.CheckMessage] = []
    for setting, names, check_id in (
        ("RATE_LIMITS", GROUPS, "accounts.E001"),
        ("LOGIN_FAILURE_LIMITS", LOGIN_FAILURE_KINDS, "accounts.E002"),
    ):
        rates = getattr(settings, setting)
        for name in names:
            rate = rates.get(name)
            if rate is None or not rate_is_valid(rate):
                errors.append(
                    checks.Error(
                        f"{setting}[{name!r}] is {rate!r}: not a rate like '600/m'",
                        hint="A count, '/', then an optional multiplier of 1-999 and s, m, h or d.",
                        id=check_id,
                    )
                )
    return errors
