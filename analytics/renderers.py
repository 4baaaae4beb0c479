from __future__ import annotations

import csv
import io
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from rest_framework.renderers import BaseRenderer

COLUMNS = [
    "bucket",
    "group",
    "requests",
    "errors",
    "p50_ms",
    "p95_ms",
    "p99_ms",
    "rows",
    "predictions",
    "tokens",
    "prompt_tokens",
    "completion_tokens",
    "cost",
    "unpriced_tokens",
]


# A cell starting with one of these is a formula to a spreadsheet ("=HYPERLINK(...)" in a key's
# name, "+cmd|..." in a username): OWASP's advice is to make it text with a leading quote.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "\n")


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, str) and value.startswith(_FORMULA_STARTS):
        return "'" + value
    return value


class UsageCSVRenderer(BaseRenderer):
    """?format=csv on the usage series: one line per (bucket, group)."""

    media_type = "text/csv"
    format = "csv"
    charset = "utf-8"

    def render(
        self, data: Any, accepted_media_type: str | None = None, renderer_context: Mapping[str, Any] | None = None
    ) -> bytes:
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=COLUMNS, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        for point in (data or {}).get("series", []):
            writer.writerow({k: _cell(v) for k, v in point.items()})
        return out.getvalue().encode()
