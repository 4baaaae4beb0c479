import time

from django.core.management.base import BaseCommand, CommandParser

from analytics.aggregation import usage_aggregate
from inference.seeding import usage_seed


class Command(BaseCommand):
    help = (
        "Fill the request log (and predictions) with realistic synthetic traffic over the last DAYS "
        "days, then aggregate it. For measuring analytics; never on a production database."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--rows", type=int, required=True)
        parser.add_argument("--days", type=float, default=30)
        parser.add_argument("--seed", type=int, default=7, help="Random seed, for repeatable data.")
        parser.add_argument("--no-aggregate", action="store_true", help="Leave the rollups alone.")

    def handle(self, *args: object, rows: int, days: float, seed: int, no_aggregate: bool, **options: object) -> None:
        started = time.perf_counter()
        result = usage_seed(rows=rows, days=days, seed=seed)
        seeded = time.perf_counter() - started
        self.stdout.write(
            f"seeded {result.rows} request-log rows and {result.predictions} predictions "
            f"from {result.start:%Y-%m-%d %H:%M} in {seeded:.1f} s"
        )
        if not no_aggregate:
            started = time.perf_counter()
            run = usage_aggregate(since=result.start)
            self.stdout.write(f"aggregated into {run.rollups} hourly rollups in {time.perf_counter() - started:.1f} s")
