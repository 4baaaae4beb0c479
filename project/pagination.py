from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework.exceptions import NotFound
from rest_framework.pagination import CursorPagination, PageNumberPagination
from rest_framework.request import Request

from project.errors import InvalidInput


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


class NumberedPagination(PageNumberPagination):
    page_size_query_param = "page_size"
    max_page_size = 500

    def paginate_queryset(self, queryset: Any, request: Request, view: Any = None) -> Any:
        try:
            return super().paginate_queryset(queryset, request, view)
        except NotFound:
            raise InvalidInput("Invalid page.", details={"page": ["Invalid page."]}) from None
