"""Admin pieces that keep the change lists quick on tables with millions of rows."""

from __future__ import annotations

from functools import cached_property

from django.contrib import admin
from django.core.paginator import Paginator
from django.db.models import QuerySet
from django.http import HttpRequest


class CappedCountPaginator(Paginator):
    """Counts at most COUNT_CAP rows: a bounded `COUNT(*)` over a LIMITed subquery.

    Django's admin counts the whole (filtered) table on every page, which takes seconds at
    tens of millions of rows. Past the cap the admin shows COUNT_CAP and the last pages are
    not offered; filters and date ranges narrow a list down instead.
    """

    COUNT_CAP = 10_000

    @cached_property
    def count(self) -> int:
        objects = self.object_list
        if isinstance(objects, QuerySet):  # always, from the admin's change lists
            return objects[: self.COUNT_CAP].count()
        return min(len(objects), self.COUNT_CAP)


class ReadOnlyAdmin(admin.ModelAdmin):
    """Browse, never edit: these tables are records of what happened."""

    paginator = CappedCountPaginator
    show_full_result_count = False  # the second, unfiltered COUNT(*) the admin would run
    show_facets = admin.ShowFacets.NEVER  # facet counts are full-table COUNTs too
    list_per_page = 50

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False
