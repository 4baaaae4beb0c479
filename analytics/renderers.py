from __future__ import annotations

import csv
import io
from datetime import datetime
from typing import Any

from rest_framework.renderers import BaseRenderer

COLUMNS = ["bucket", "group", "requests", "errors", "p50_ms", "p95_ms", "p99_ms", "rows", "predictions", "tokens"]


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    return value.isoformat() if isinstance(value, datetime) else value


class UsageCSVRenderer(BaseRenderer):
    """?format=csv on the usage series: one line per (bucket, group)."""

    media_type = "text/csv"
    format = "csv"
    charset = "utf-8"

    def render(self, data: Any, accepted_media_type: str | None = None, renderer_context: dict | None = None) -> bytes:
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=COLUMNS, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        for point in (data or {}).get("series", []):
            writer.writerow({k: _cell(v) for k, v in point.items()})
        return out.getvalue().encode()
