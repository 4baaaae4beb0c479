"""Facts about an incoming request that several apps need."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterator
from functools import cache
from typing import Any

from django.conf import settings
from django.http import HttpRequest, StreamingHttpResponse

from project.errors import InvalidInput

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@cache
def _trusted(proxies: tuple[str, ...]) -> tuple[IPNetwork, ...]:
    return tuple(ipaddress.ip_network(p, strict=False) for p in proxies)


def _address(value: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(value.strip())
    except ValueError:
        return None


def client_ip(request: HttpRequest) -> str:
    """The client's address, or "" when none can be trusted.

    X-Forwarded-For can be written by anyone, so it is read only when the connection comes
    from a proxy in TRUSTED_PROXIES, and then from the right: each trusted proxy's entry is
    skipped, and the first address that is not a trusted proxy is the client (the entries
    left of it are whatever the client chose to write).
    """
    networks = _trusted(tuple(settings.TRUSTED_PROXIES))
    remote = _address(request.META.get("REMOTE_ADDR", ""))
    if remote is None:
        return ""
    if not any(remote in network for network in networks):
        return str(remote)
    hops = [part for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if part.strip()]
    for hop in reversed(hops):
        address = _address(hop)
        if address is None:
            return ""
        if not any(address in network for network in networks):
            return str(address)
    return str(remote)


def streamed_parts(response: StreamingHttpResponse) -> Iterator[bytes]:
    """A streamed answer's parts, for middleware that wraps them in a generator of its own. The
    app runs under WSGI, so every stream is a plain iterator; an async one would be a bug."""
    content = response.streaming_content
    if not isinstance(content, Iterator):
        raise TypeError("an asynchronous stream cannot be served here (the app runs under WSGI)")
    return content


def when_sent(content: Iterator[bytes], *, then: Callable[[int], Any]) -> Iterator[bytes]:
    """Pass a streamed body through, then call `then(bytes sent)` once it has been sent or
    abandoned (a client that went away: the server closes the response, and Django closes its
    iterators in the order they were set, so a wrapper set earlier has already ended)."""
    sent = 0
    try:
        for part in content:
            sent += len(part)
            yield part
    finally:
        then(sent)


IDEMPOTENCY_KEY_HEADER = "HTTP_IDEMPOTENCY_KEY"


def refuse_idempotency_key(request: HttpRequest) -> None:
    """For a creating route whose answer cannot be kept to replay (a new API key: its secret is
    never stored), a key would promise what cannot be done: a 400 says so."""
    if request.META.get(IDEMPOTENCY_KEY_HEADER) is not None:
        raise InvalidInput(
            "Idempotency-Key is not supported here: the answer holds a secret that is never stored.",
            details={"Idempotency-Key": ["Not supported on this route."]},
        )
