"""Facts about an incoming request that several apps need."""

from __future__ import annotations

import ipaddress

from django.conf import settings
from django.http import HttpRequest


def _valid_ip(value: str) -> str:
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        return ""


def client_ip(request: HttpRequest) -> str:
    """The client's address, or "" when none can be trusted.

    X-Forwarded-For can be written by anyone, so it is read only when TRUSTED_PROXY_COUNT
    proxies are known to stand in front of us, and then only the entry the outermost trusted
    proxy appended (counting from the right), never the spoofable leftmost one.
    """
    remote = request.META.get("REMOTE_ADDR", "")
    hops = settings.TRUSTED_PROXY_COUNT
    if hops > 0:
        forwarded = [p.strip() for p in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if p.strip()]
        if len(forwarded) >= hops:
            return _valid_ip(forwarded[-hops])
    return _valid_ip(remote)
