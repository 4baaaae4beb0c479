import re
from datetime import timedelta

from django.core.management.base import BaseCommand, CommandError, CommandParser

from analytics.aggregation import AggregationError, request_logs_purge

_UNITS = {"d": "days", "h": "hours", "w": "weeks"}


def parse_age(text: str) -> timedelta:
    match = re.fullmatch(r"(\d+)([dhw])", text.strip())
    if not match:
        raise CommandError(f"--older-than takes a number and d, h or w, e.g. 90d (got {text!r})")
    return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})


class Command(BaseCommand):
    help = "Delete raw request-log rows older than an age (e.g. 90d). The hourly rollups keep their numbers."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--older-than", required=True, help="e.g. 90d, 12w or 48h")

    def handle(self, *args: object, older_than: str, **options: object) -> None:
        try:
            deleted = request_logs_purge(older_than=parse_age(older_than))
        except AggregationError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"deleted {deleted} request-log rows")
