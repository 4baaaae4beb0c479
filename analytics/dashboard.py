"""The usage dashboard inside the admin (/admin/analytics/dashboard/), for staff."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from django.conf import settings
from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils import timezone
from django.utils.safestring import SafeString

from accounts.permissions import authenticated_user
from analytics import selectors
from analytics.aggregation import floor_day
from analytics.charts import Point, bar_chart, column_chart, line_chart
from analytics.models import Dimension
from analytics.selectors import Period

PERIODS = (1, 7, 30, 90)


def _period(days: int) -> Period:
    now = timezone.now()
    end = now.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    return Period(start=floor_day(now) - timedelta(days=days - 1), end=end)


def dashboard(request: HttpRequest) -> HttpResponse:
    try:
        days = int(request.GET.get("days", 30))
    except ValueError:
        days = 30
    days = days if days in PERIODS else 30
    period = _period(days)
    user = authenticated_user(request)  # the admin lets only staff in
    summary = selectors.usage_summary(user=user, period=period)
    by_day = {p["bucket"]: p for p in selectors.usage_series(user=user, period=period, interval="day", group_by=None)}
    day_starts = [period.start + timedelta(days=i) for i in range(days)]
    labels = [d.strftime("%b %d") for d in day_starts]
    daily = [by_day.get(d) for d in day_starts]
    currency = settings.LLM_PRICE_CURRENCY
    top_keys = selectors.usage_top(user=user, period=period, dimension=Dimension.API_KEY, by=("requests", "cost"))

    def line(values: list[float | None]) -> list[Point | None]:
        return [None if v is None else Point(label, v) for label, v in zip(labels, values, strict=True)]

    charts = [
        column_chart(
            "Requests per day", [Point(lbl, p["requests"] if p else 0) for lbl, p in zip(labels, daily, strict=True)]
        ),
        line_chart(
            "Error rate per day (4xx and 5xx)",
            line([round(100 * p["errors"] / p["requests"], 2) if p and p["requests"] else None for p in daily]),
            labels,
            unit="%",
        ),
        line_chart("p95 latency per day", line([p["p95_ms"] if p else None for p in daily]), labels, unit=" ms"),
        column_chart(
            "Tokens per day", [Point(lbl, p["tokens"] if p else 0) for lbl, p in zip(labels, daily, strict=True)]
        ),
        column_chart(
            f"Estimated cost per day ({currency})",
            [Point(lbl, p["cost"] if p else 0) for lbl, p in zip(labels, daily, strict=True)],
        ),
        bar_chart("Top users (requests)", [Point(u["username"], u["requests"]) for u in summary["top_users"]]),
        bar_chart(
            "Top API keys (requests)",
            [Point(label, t.requests) for label, t in top_keys["requests"] if label != "no key"],
        ),
        bar_chart(
            f"Top API keys (estimated cost, {currency})",
            [Point(label, round(t.cost, 6)) for label, t in top_keys["cost"] if label != "no key" and t.cost > 0],
        ),
        bar_chart(
            "Predictions per model",
            # the generation routes' models are in by_model too, with tokens but no predictions
            [Point(m["model"], m["predictions"]) for m in summary["by_model"] if m["predictions"]],
        ),
        *(chart for make in _more_charts for chart in make(period)),
    ]
    context = {
        **admin.site.each_context(request),
        "title": "Usage dashboard",
        "summary": summary,
        "charts": charts,
        "days": days,
        "periods": PERIODS,
        "period": period,
    }
    return TemplateResponse(request, "admin/analytics/dashboard.html", context)


ChartMaker = Callable[[Period], list[SafeString]]
_more_charts: list[ChartMaker] = []


def register_charts(make: ChartMaker) -> None:
    """Let another app add charts of the period (the roll-outs'), without analytics knowing it."""
    if make not in _more_charts:
        _more_charts.append(make)
