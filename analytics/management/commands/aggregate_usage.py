import time
from datetime import datetime

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils.dateparse import parse_datetime

from analytics.aggregation import AggregationError, usage_aggregate


class Command(BaseCommand):
    help = (
        "Bring the hourly usage rollups up to date from the request log. Safe to run twice or at "
        "the same time as another run; run it every minute or so (--every 60) in production."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--since", help="Recompute from this ISO 8601 time (default: where the last run got to).")
        parser.add_argument("--every", type=float, help="Keep running, once every this many seconds.")

    def handle(self, *args: object, since: str | None, every: float | None, **options: object) -> None:
        start: datetime | None = None
        if since:
            start = parse_datetime(since)
            if start is None or start.tzinfo is None:
                raise CommandError("--since takes an ISO 8601 time with a timezone, e.g. 2026-01-01T00:00:00Z")
        while True:
            try:
                run = usage_aggregate(since=start)
            except AggregationError as exc:
                raise CommandError(str(exc)) from exc
            self.stdout.write(
                f"rollups from {run.start:%Y-%m-%d %H:%M} to {run.until:%Y-%m-%d %H:%M:%S}: {run.rollups}"
            )
            if not every:
                return
            start = None
            time.sleep(every)
