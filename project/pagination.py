from __future__ import annotations

import re
from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework.exceptions import NotFound
from rest_framework.pagination import CursorPagination, PageNumberPagination
from rest_framework.request import Request

from project.errors import InvalidInput

_WHOLE_NUMBER = re.compile(r"[1-9][0-9]*")
_BASE64 = re.compile(r"[A-Za-z0-9+/=]+")  # DRF's cursors: base64 of their position


def _page_size(pagination: CursorPagination | PageNumberPagination, request: Request) -> int:
    """`page_size` when given: a whole number from 1 (more than max_page_size gives that many);
    anything else is a 400, where DRF would silently use the default."""
    # Every pagination class here sets all three (DRF's types allow None for each).
    name, default, most = pagination.page_size_query_param, pagination.page_size, pagination.max_page_size
    if name is None or default is None or most is None:
        raise TypeError(f"{type(pagination).__name__} must set page_size, max_page_size and page_size_query_param")
    raw = request.query_params.get(name)
    if raw is None:
        return default
    if not _WHOLE_NUMBER.fullmatch(raw):
        raise InvalidInput(details={"page_size": ["Expected a whole number from 1."]})
    return most if len(raw) > 9 else min(int(raw), most)


def _page_size_parameter(pagination: CursorPagination | PageNumberPagination) -> dict[str, Any]:
    return {
        "name": pagination.page_size_query_param,
        "required": False,
        "in": "query",
        "description": f"Results per page (default {pagination.page_size}; more than {pagination.max_page_size} "
        f"gives {pagination.max_page_size}).",
        "schema": {"type": "integer", "minimum": 1},
    }


class NewestFirstPagination(CursorPagination):
    """Cursor pages, newest first: no COUNT(*) and stable under inserts, at any table size."""

    ordering = ("-created_at", "-id")
    page_size_query_param = "page_size"
    max_page_size = 500

    def paginate_queryset(self, queryset: Any, request: Request, view: Any = None) -> Any:
        try:
            return super().paginate_queryset(queryset, request, view)
        # DRF answers a mangled cursor with 404, and a well-encoded one with a bad position
        # fails in the query: both are bad input.
        except (NotFound, DjangoValidationError):
            raise InvalidInput("Invalid cursor.", details={"cursor": ["Invalid cursor."]}) from None

    def decode_cursor(self, request: Request) -> Any:
        # DRF's base64 decoding skips what is not base64: "" and "%15" were the first page.
        raw = request.query_params.get(self.cursor_query_param)
        if raw is not None and not _BASE64.fullmatch(raw):
            raise InvalidInput("Invalid cursor.", details={"cursor": ["Invalid cursor."]})
        return super().decode_cursor(request)

    def get_page_size(self, request: Request) -> int:
        return _page_size(self, request)

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        return [
            {
                "name": self.cursor_query_param,
                "required": False,
                "in": "query",
                "description": "The `next` or `previous` link's cursor; any other value is a 400.",
                "schema": {"type": "string", "pattern": f"^{_BASE64.pattern}$"},
            },
            _page_size_parameter(self),
        ]


class NumberedPagination(PageNumberPagination):
    page_size_query_param = "page_size"
    max_page_size = 500

    def paginate_queryset(self, queryset: Any, request: Request, view: Any = None) -> Any:
        try:
            return super().paginate_queryset(queryset, request, view)
        except NotFound:
            raise InvalidInput("Invalid page.", details={"page": ["Invalid page."]}) from None

    def get_page_number(self, request: Request, paginator: Any) -> Any:
        raw = request.query_params.get(self.page_query_param)
        if raw is None or raw in self.last_page_strings:
            return super().get_page_number(request, paginator)
        if not _WHOLE_NUMBER.fullmatch(raw):  # DRF would take "" as page 1
            raise InvalidInput("Invalid page.", details={"page": ["Expected a whole number from 1, or 'last'."]})
        return raw

    def get_page_size(self, request: Request) -> int:
        return _page_size(self, request)

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        return [
            {
                "name": self.page_query_param,
                "required": False,
                "in": "query",
                "description": "A page number (from 1; past the last page is a 400), or `last`.",
                "schema": {"oneOf": [{"type": "integer", "minimum": 1}, {"type": "string", "enum": ["last"]}]},
            },
            _page_size_parameter(self),
        ]
