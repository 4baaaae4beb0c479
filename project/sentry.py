"""Errors to Sentry (optional: only with SENTRY_DSN), with nothing secret in what is sent.

sentry-sdk already leaves out personal data unless told otherwise (send_default_pii=False) and
scrubs the usual names (authorization, cookie, token, password, x_api_key...) wherever they
appear, recursively here. On top of that: no local variables in stack frames, none of the
integrations sentry-sdk would switch on by itself, and before anything is sent, request bodies
and query strings are dropped (a body may hold a password, a prompt or a customer's rows), and so
is every request header but a few harmless ones. Each event is tagged with the request id.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from project.logs import current_request_id

if TYPE_CHECKING:  # sentry-sdk itself is imported only when a DSN is set
    from sentry_sdk.types import Event, Hint

_HEADERS_KEPT = frozenset({"content-type", "content-length", "user-agent", "accept", "host", "x-request-id"})


def scrubbed(event: Event, hint: Hint | None = None) -> Event:
    request = event.get("request")
    if isinstance(request, dict):
        request.pop("data", None)
        request.pop("cookies", None)
        request.pop("query_string", None)
        headers = request.get("headers")
        if isinstance(headers, dict):
            request["headers"] = {name: value for name, value in headers.items() if name.lower() in _HEADERS_KEPT}
    # Called in the thread that captured the event, so the request it belongs to is current.
    event.setdefault("tags", {})["request_id"] = current_request_id()
    return event


def sentry_init(*, dsn: str, environment: str) -> None:
    import sentry_sdk
    from sentry_sdk.integrations.django import DjangoIntegration
    from sentry_sdk.scrubber import DEFAULT_DENYLIST, EventScrubber

    sentry_sdk.init(
        dsn=dsn,
        environment=environment,
        integrations=[DjangoIntegration()],
        send_default_pii=False,
        # Only what is asked for: sentry-sdk would otherwise hook into libraries it finds (its
        # OpenAI integration reports the SDK's own exceptions, prompts in their frames).
        auto_enabling_integrations=False,
        # A frame's local variables can hold anything: a prompt, a row, a key.
        include_local_variables=False,
        event_scrubber=EventScrubber(denylist=[*DEFAULT_DENYLIST, "idempotency_key", "key"], recursive=True),
        before_send=scrubbed,
        max_request_body_size="never",
        traces_sample_rate=0.0,
    )
