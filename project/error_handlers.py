"""The one error path: every exception, from our code, DRF or Django, in one JSON shape (on the
Open Inference Protocol's routes, that protocol's).

`exception_handler` is DRF's EXCEPTION_HANDLER; the views below are Django's handler404 and
friends, for requests that never reach a DRF view.
"""

from __future__ import annotations

import logging
from typing import Any, TypeVar

from django.core.exceptions import PermissionDenied, RequestDataTooBig
from django.db import InterfaceError, OperationalError
from django.http import Http404, HttpRequest, HttpResponseBase, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from rest_framework import exceptions as drf
from rest_framework.response import Response
from rest_framework.views import set_rollback

from project.errors import AppError, DatabaseUnavailable, PayloadTooLarge, error_body

logger = logging.getLogger(__name__)

_R = TypeVar("_R", bound=HttpResponseBase)


# DRF's exception classes answer with their own codes; these names are the contract's.
_DRF_CODES: dict[type[drf.APIException], str] = {
    drf.ValidationError: "validation_error",
    drf.ParseError: "parse_error",
    drf.NotAuthenticated: "not_authenticated",
    drf.AuthenticationFailed: "authentication_failed",
    drf.PermissionDenied: "permission_denied",
    drf.NotFound: "not_found",
    drf.MethodNotAllowed: "method_not_allowed",
    drf.NotAcceptable: "not_acceptable",
    drf.UnsupportedMediaType: "unsupported_media_type",
    drf.Throttled: "rate_limited",
}


def plain_details(value: Any) -> Any:
    """Validation details as plain JSON: string keys, string messages, at any depth.

    DRF reports the errors of a list's items keyed by their integer index (`{"messages": {0:
    {...}}}`), which JSON cannot carry as such; and its messages are ErrorDetail objects. Done
    here, on the one error path, so no serializer anywhere can turn bad input into a 500.
    """
    if isinstance(value, dict):
        return {str(key): plain_details(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain_details(item) for item in value]
    return value if isinstance(value, (int, float, bool)) or value is None else str(value)


def _from_drf(exc: drf.APIException) -> tuple[int, str, str, dict[str, Any]]:
    code = next((c for cls, c in _DRF_CODES.items() if isinstance(exc, cls)), "error")
    if isinstance(exc, drf.ValidationError):
        errors = exc.detail
        details = plain_details(errors if isinstance(errors, dict) else {"non_field_errors": errors})
        return exc.status_code, code, "Invalid input.", details
    detail = exc.detail
    message: object = detail
    if isinstance(detail, dict):  # simplejwt's InvalidToken carries a dict with its own "detail"
        message = detail.get("detail", "")
    elif isinstance(detail, list):
        message = detail[0] if detail else ""
    return exc.status_code, code, str(message), {}


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response:
    """DRF's EXCEPTION_HANDLER: every exception raised in a DRF view ends here."""
    headers: dict[str, str] = {}
    if isinstance(exc, AppError):
        status, code, message, details = exc.status_code, exc.code, exc.message, plain_details(exc.details)
        if exc.retryable is False:
            headers["x-should-retry"] = "false"
        if exc.retry_after is not None:
            headers["Retry-After"] = str(exc.retry_after)
    elif isinstance(exc, Http404):
        status, code, message, details = 404, "not_found", "Not found.", {}
    elif isinstance(exc, PermissionDenied):
        status, code, message, details = 403, "permission_denied", "You do not have permission to do this.", {}
    elif isinstance(exc, (OperationalError, InterfaceError)):
        logger.error("database unavailable: %s", exc.__class__.__name__)
        status, code, message, details = 503, DatabaseUnavailable.code, DatabaseUnavailable.default_message, {}
    elif isinstance(exc, RequestDataTooBig):
        status, code, message, details = 413, PayloadTooLarge.code, PayloadTooLarge.default_message, {}
    elif isinstance(exc, drf.APIException):
        status, code, message, details = _from_drf(exc)
        if auth_header := getattr(exc, "auth_header", None):
            headers["WWW-Authenticate"] = auth_header
        if wait := getattr(exc, "wait", None):
            headers["Retry-After"] = str(int(wait))
    else:
        # A bug: log it with its traceback, answer without one.
        logger.exception("unhandled error in %s", context.get("view").__class__.__name__)
        status, code, message, details = 500, "internal_error", "Internal server error.", {}

    set_rollback()
    request = context.get("request")
    body = shaped_error_body(getattr(request, "path", ""), code, message, details)
    return _with_error_code(Response(body, status=status, headers=headers), code)


def _speaks_oip(path: str) -> bool:
    return path == "/v2" or path.startswith("/v2/")


def shaped_error_body(path: str, code: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    """The contract's error shape, or on the Open Inference Protocol's routes (/v2) the
    protocol's own, `{"error": "<message>"}`, which its clients read (tritonclient raises it)."""
    if _speaks_oip(path):
        return {"error": message}
    return error_body(code, message, details)


def _with_error_code(response: _R, code: str) -> _R:
    """The response, marked with its error's code for the request log and the request's log line
    (analytics.recording and project.request_telemetry read it back with getattr)."""
    response.error_code = code  # type: ignore[attr-defined]  # our own attribute on Django's response
    return response


def json_error(request: HttpRequest, status: int, code: str, message: str) -> JsonResponse:
    return _with_error_code(JsonResponse(shaped_error_body(request.path, code, message), status=status), code)


@csrf_exempt  # an unknown API path is a 404 for any method, never a CSRF page
def not_found_view(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    """handler404: unknown paths answer in the error shape, not an HTML page."""
    return json_error(request, 404, "not_found", "Not found.")


def server_error_view(request: HttpRequest) -> JsonResponse:
    """handler500: the last resort for errors outside DRF views."""
    return json_error(request, 500, "internal_error", "Internal server error.")


def bad_request_view(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    return json_error(request, 400, "bad_request", "Bad request.")


def permission_denied_view(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    return json_error(request, 403, "permission_denied", "You do not have permission to do this.")
