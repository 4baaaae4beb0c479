import time

from django.core.management.base import BaseCommand, CommandParser

from inference.idempotency import purge_expired


class Command(BaseCommand):
    help = "Delete Idempotency-Key records past their lifetime (IDEMPOTENCY_KEY_HOURS). Run it hourly (--every 3600)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--every", type=float, help="Keep running, once every this many seconds.")

    def handle(self, *args: object, every: float | None, **options: object) -> None:
        while True:
            self.stdout.write(f"expired idempotency keys deleted: {purge_expired()}")
            if not every:
                return
            time.sleep(every)
