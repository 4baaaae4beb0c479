"""Logging: one line per request, the request id on every line a request writes, JSON or console.

LOG_FORMAT=json writes one JSON object a line (python-json-logger over orjson), for a log
pipeline; LOG_FORMAT=console (the default under `make run`) writes plain lines for a terminal.
Either way each line is printed once: Django's own console handler is switched off and its
loggers go to the root handler like everyone else's.

The request id travels in a context variable, set by project.request_telemetry when a request
starts on a thread (and again for a stream, while the server sends it), so a line logged anywhere
below, by any module, carries it without being handed it. It stays set until the thread's next
request: Django logs a 4xx or 5xx answer after the middleware has returned.
"""

from __future__ import annotations

import logging
from contextvars import ContextVar
from typing import Any

from pythonjsonlogger.core import RESERVED_ATTRS

_request_id: ContextVar[str] = ContextVar("mlserve_request_id", default="-")


def bind_request_id(request_id: str) -> None:
    """The id of the request this thread now serves, for every line it logs until its next one."""
    _request_id.set(request_id)


def current_request_id() -> str:
    return _request_id.get()


class RequestIdFilter(logging.Filter):
    """Puts the current request's id on every record (`-` outside a request)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = current_request_id()
        return True


def logging_config(*, log_format: str, level: str) -> dict[str, Any]:
    if log_format not in ("json", "console"):
        raise ValueError(f"LOG_FORMAT must be json or console, not {log_format!r}")
    formatters = {
        "console": {"format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"},
        "json": {
            "()": "pythonjsonlogger.orjson.OrjsonFormatter",
            "fmt": "%(levelname)s %(name)s %(message)s %(request_id)s",
            "rename_fields": {"levelname": "level", "name": "logger"},
            "timestamp": True,
            # Not written: Django passes the request object itself with its 4xx/5xx lines, and its
            # repr holds the query string (which may carry anything a client put there).
            "reserved_attrs": [*RESERVED_ATTRS, "request", "taskName"],
        },
    }
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"request_id": {"()": "project.logs.RequestIdFilter"}},
        "formatters": {log_format: formatters[log_format]},
        "handlers": {"out": {"class": "logging.StreamHandler", "formatter": log_format, "filters": ["request_id"]}},
        "root": {"handlers": ["out"], "level": level},
        "loggers": {
            # Django's defaults give these their own console handler as well: every line twice.
            "django": {"handlers": [], "propagate": True, "level": level},
            # The development server's access lines: the request line below says the same.
            "django.server": {"handlers": [], "propagate": True, "level": "WARNING"},
            # The HTTP client under the openai SDK logs every upstream call at INFO.
            "httpx": {"level": "WARNING"},
            "httpx2": {"level": "WARNING"},
            "openai": {"level": "WARNING"},
        },
    }
