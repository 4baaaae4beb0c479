"""The application's errors: one small hierarchy, each with a status and a stable code.

`project.error_handlers` turns these, DRF's and Django's exceptions into the one error shape
of the API contract:

    {"error": {"code": "...", "message": "...", "details": {...}}}
"""

from __future__ import annotations

from typing import Any


class AppError(Exception):
    """Base of the application's errors: a status, a stable code and a message."""

    status_code = 500
    code = "internal_error"
    default_message = "Internal server error."
    # False for errors that the same request cannot get past by trying again: the answer then
    # says `x-should-retry: false`, which the OpenAI SDKs obey instead of retrying a 503 twice.
    retryable: bool | None = None
    retry_after: int | None = None  # seconds, sent as Retry-After

    def __init__(self, message: str | None = None, *, details: dict[str, Any] | None = None) -> None:
        self.message = message or self.default_message
        self.details = details or {}
        super().__init__(self.message)


class InvalidInput(AppError):
    status_code = 400
    code = "validation_error"
    default_message = "Invalid input."


class NotFound(AppError):
    status_code = 404
    code = "not_found"
    default_message = "Not found."


class Conflict(AppError):
    status_code = 409
    code = "conflict"
    default_message = "The request conflicts with the object's current state."
    retryable = False


class PayloadTooLarge(AppError):
    status_code = 413
    code = "payload_too_large"
    default_message = "Request is larger than this service accepts."


class ServiceUnavailable(AppError):
    status_code = 503
    code = "service_unavailable"
    default_message = "Service unavailable."


class ModelUnavailable(ServiceUnavailable):
    code = "model_unavailable"
    default_message = "The model cannot be loaded."
    retryable: bool | None = False  # a missing or tampered file stays so until an operator acts


class BackendNotConfigured(ServiceUnavailable):
    code = "backend_not_configured"
    default_message = (
        "No generation backend is configured: set OPENAI_API_KEY (and OPENAI_BASE_URL for an "
        "OpenAI-compatible server such as vLLM or Ollama)."
    )
    retryable = False


class UpstreamError(AppError):
    """The upstream (LLM) failed or answered something unusable. Its own words are never passed on."""

    status_code = 502
    code = "upstream_error"
    default_message = "The upstream model server failed."


class UpstreamRejected(AppError):
    status_code = 400
    code = "upstream_rejected"
    default_message = (
        "The upstream model server refused this request (for example an unknown model, or a prompt "
        "longer than its context)."
    )


class DatabaseUnavailable(ServiceUnavailable):
    code = "database_unavailable"
    default_message = "The database is unavailable; try again shortly."


class UpstreamUnavailable(AppError):
    status_code = 503
    code = "upstream_unavailable"
    default_message = "The upstream model server is overloaded or rate limiting us; try again shortly."


class UpstreamTimeout(AppError):
    status_code = 504
    code = "upstream_timeout"
    default_message = "The upstream model server did not answer in time."


class ClientClosedRequest(AppError):
    """The client went away before its answer was finished (a stream cut short by the client).
    Never sent, since there is no one to send it to: it records what happened, with nginx's 499."""

    status_code = 499
    code = "client_disconnected"
    default_message = "The client closed the connection before the answer was finished."


def error_body(code: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details or {}}}
