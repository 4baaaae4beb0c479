from __future__ import annotations

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from analytics.models import RequestLog
from project.admin_tools import ReadOnlyAdmin


class StatusFilter(admin.SimpleListFilter):
    """Status classes from a fixed list: no DISTINCT over the whole log."""

    title = "status"
    parameter_name = "status"
    CHOICES = {
        "2xx": (200, 300),
        "4xx": (400, 500),
        "5xx": (500, 600),
        "400": (400, 401),
        "401": (401, 402),
        "403": (403, 404),
        "404": (404, 405),
        "413": (413, 414),
        "429": (429, 430),
    }

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [(key, key) for key in self.CHOICES]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        bounds = self.CHOICES.get(self.value() or "")
        return queryset.filter(status__gte=bounds[0], status__lt=bounds[1]) if bounds else queryset


@admin.register(RequestLog)
class RequestLogAdmin(ReadOnlyAdmin):
    list_display = ("created_at", "method", "path", "status", "latency_ms", "user", "auth_method", "client_ip")
    list_filter = (StatusFilter, "method", "auth_method", ("created_at", admin.DateFieldListFilter), "user")
    # Exact matches only: a LIKE over millions of paths would scan the table.
    search_fields = ("=endpoint", "=user__username")
    list_select_related = ("user",)
    ordering = ("-created_at",)
    readonly_fields = [f.name for f in RequestLog._meta.fields]


# The admin's front page, with a link to the usage dashboard above the app list.
admin.site.index_template = "admin/analytics/index.html"
