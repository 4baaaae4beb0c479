"""GET /api/v1/models/{name}/rollout/compare/: a model's versions compared on real traffic,
what each answered (from the request log) and what its shadow would have answered (from the
shadow runs), over a period.

Read from the raw tables, not the rollups: a roll-out is judged over hours or days, and the
request log keeps the version that answered each request, which the rollups do not.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from django.db.models import Count, Q, Sum

from analytics.histogram import BINS, percentiles
from analytics.models import RequestLog
from analytics.selectors import Period
from inference.models import ModelVersion, ShadowPrediction, Task
from inference.selectors import model_version_get, rollout_get


def _latency(histogram: list[int]) -> dict[str, float | None]:
    p50, p95 = percentiles(histogram, (0.50, 0.95))
    return {"p50": p50, "p95": p95}


def _rate(part: int, whole: int) -> float:
    return round(part / whole, 6) if whole else 0.0


def rollout_compare(*, name: str, period: Period) -> dict[str, Any]:
    """Per version: requests answered, errors, rows, latency p50/p95; for shadows, their runs and
    how often they agreed with the version that answered (classifiers: the share of rows of the
    same class; regressors: the mean absolute difference)."""
    active = model_version_get(name=name)  # NotFound for an unknown name
    rollout = rollout_get(name=name)
    window = {"created_at__gte": period.start, "created_at__lt": period.end}

    answered: dict[int, dict[str, Any]] = defaultdict(lambda: {"requests": 0, "errors": 0, "rows": 0})
    answered_latency: dict[int, list[int]] = defaultdict(lambda: [0] * BINS)
    logged = (
        RequestLog.objects.filter(model=name, model_version__isnull=False, **window)
        .values("model_version", "latency_bin")
        .annotate(requests=Count("id"), errors=Count("id", filter=Q(status__gte=400)), rows=Sum("rows"))
    )
    for row in logged:
        version = row["model_version"] or 0  # not null: filtered on
        totals = answered[version]
        totals["requests"] += row["requests"]
        totals["errors"] += row["errors"]
        totals["rows"] += row["rows"] or 0
        answered_latency[version][row["latency_bin"]] += row["requests"]

    shadows: dict[int, dict[str, Any]] = defaultdict(
        lambda: {"runs": 0, "failed": 0, "rows": 0, "compared_rows": 0, "agreed_rows": 0, "abs_diff_sum": 0.0}
    )
    shadow_latency: dict[int, list[int]] = defaultdict(lambda: [0] * BINS)
    paired_latency: dict[int, list[int]] = defaultdict(lambda: [0] * BINS)
    runs = (
        ShadowPrediction.objects.filter(model_name=name, **window)
        .values("version", "latency_bin", "answered_latency_bin")
        .annotate(
            runs=Count("id"),
            failed=Count("id", filter=~Q(error_code="")),
            rows=Sum("n_rows"),
            compared_rows=Sum("n_rows", filter=Q(error_code="")),
            agreed_rows=Sum("agreed_rows"),
            abs_diff_sum=Sum("abs_diff_sum"),
        )
    )
    for run in runs:
        version = run["version"]
        totals = shadows[version]
        for field in ("runs", "failed", "rows", "compared_rows", "agreed_rows"):
            totals[field] += run[field] or 0
        totals["abs_diff_sum"] += run["abs_diff_sum"] or 0.0
        succeeded = run["runs"] - run["failed"]
        shadow_latency[version][run["latency_bin"]] += succeeded
        paired_latency[version][run["answered_latency_bin"]] += succeeded

    roles: dict[int, list[str]] = defaultdict(list)
    roles[active.version].append("active")
    canary = shadow = None
    if rollout is not None and rollout.canary is not None:
        canary = {"version": rollout.canary.version, "percent": rollout.canary_percent}
        roles[rollout.canary.version].append("canary")
    if rollout is not None and rollout.shadow is not None:
        shadow = {"version": rollout.shadow.version}
        roles[rollout.shadow.version].append("shadow")

    tasks = dict(ModelVersion.objects.filter(name=name).values_list("version", "task"))
    versions = []
    for version in sorted(set(answered) | set(shadows) | set(roles)):
        totals = answered.get(version, {"requests": 0, "errors": 0, "rows": 0})
        entry: dict[str, Any] = {
            "version": version,
            "roles": roles.get(version, []),
            "requests": totals["requests"],
            "errors": totals["errors"],
            "error_rate": _rate(totals["errors"], totals["requests"]),
            "rows": totals["rows"],
            "latency_ms": _latency(answered_latency[version]),
            "shadow": None,
        }
        if version in shadows:
            runs_of = shadows[version]
            regressor = tasks.get(version) == Task.REGRESSION
            compared = runs_of["compared_rows"]
            entry["shadow"] = {
                "runs": runs_of["runs"],
                "failed": runs_of["failed"],
                "rows": runs_of["rows"],
                "agreement": None if regressor or not compared else round(runs_of["agreed_rows"] / compared, 6),
                "mean_abs_diff": round(runs_of["abs_diff_sum"] / compared, 6) if regressor and compared else None,
                "latency_ms": _latency(shadow_latency[version]),
                "answered_latency_ms": _latency(paired_latency[version]),
            }
        versions.append(entry)
    return {
        "model": name,
        "start": period.start,
        "end": period.end,
        "active": active.version,
        "canary": canary,
        "shadow": shadow,
        "versions": versions,
    }
