"""The roll-outs' charts on the admin's usage dashboard (registered with analytics.dashboard)."""

from __future__ import annotations

from typing import Any

from django.utils.safestring import SafeString

from analytics.charts import Point, bar_chart
from analytics.selectors import Period
from inference.models import Rollout
from inference.rollout_compare import rollout_compare

MAX_ROLLOUTS_SHOWN = 3


def _label(version: dict[str, Any]) -> str:
    roles = ", ".join(version["roles"])
    return f"v{version['version']} ({roles})" if roles else f"v{version['version']}"


def rollout_charts(period: Period) -> list[SafeString]:
    """For each model being rolled out: its versions side by side, as GET .../rollout/compare/."""
    charts = []
    for name in Rollout.objects.order_by("name").values_list("name", flat=True)[:MAX_ROLLOUTS_SHOWN]:
        compared = rollout_compare(name=name, period=period)["versions"]
        answering = [v for v in compared if v["requests"]]
        charts.append(
            bar_chart(f"{name} roll-out: requests per version", [Point(_label(v), v["requests"]) for v in answering])
        )
        charts.append(
            bar_chart(
                f"{name} roll-out: p95 latency per version",
                [Point(_label(v), v["latency_ms"]["p95"] or 0) for v in answering],
                unit=" ms",
            )
        )
        runs = [(v, v["shadow"]) for v in compared if v["shadow"] and v["shadow"]["runs"]]
        agreement = [Point(_label(v), round(100 * r["agreement"], 2)) for v, r in runs if r["agreement"] is not None]
        differences = [Point(_label(v), r["mean_abs_diff"]) for v, r in runs if r["mean_abs_diff"] is not None]
        if agreement or not differences:
            charts.append(bar_chart(f"{name} roll-out: shadow agreement with the answer", agreement, unit="%"))
        if differences:
            charts.append(bar_chart(f"{name} roll-out: shadow mean absolute difference", differences))
    return charts
