"""Request bodies sent in chunks (Transfer-Encoding: chunked, no Content-Length).

Django reads a body only as far as Content-Length says, so a chunked body looked empty and got
a misleading 400 ("no model", "no features"). Servers that end the body stream themselves say so
with `wsgi.input_terminated` (gunicorn does); there Django is told that the body may be one byte
longer than MAX_REQUEST_BODY_BYTES, and reads it, like any other, only when a view parses it
(after authentication), stopping at its real end; the JSON parser then says how long it was
(project.json) and the usual 413 follows when it is over. A server that cannot end it (the
development server) gets a clear 411.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import orjson
from django.conf import settings

from project.errors import error_body

CHUNKED = "mlserve.chunked_body"  # in the WSGI environ: CONTENT_LENGTH is a bound, not the length
StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]

_LENGTH_REQUIRED = orjson.dumps(
    error_body(
        "length_required",
        "This server cannot read a chunked request body: send it with a Content-Length header.",
    )
)


def _is_chunked(environ: dict[str, Any]) -> bool:
    return "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower() and not environ.get("CONTENT_LENGTH")


class ChunkedBodies:
    """WSGI middleware around the Django application; see the module's docstring."""

    def __init__(self, app: WSGIApp) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if _is_chunked(environ):
            if not environ.get("wsgi.input_terminated"):
                headers = [("Content-Type", "application/json"), ("Content-Length", str(len(_LENGTH_REQUIRED)))]
                start_response("411 Length Required", headers)
                return [_LENGTH_REQUIRED]
            environ["CONTENT_LENGTH"] = str(settings.MAX_REQUEST_BODY_BYTES + 1)
            environ[CHUNKED] = True
        return self.app(environ, start_response)
