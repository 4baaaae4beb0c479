from django.core.management.base import BaseCommand, CommandError, CommandParser

from inference.services import ShapeChange, model_activate
from project.errors import NotFound


class Command(BaseCommand):
    help = "Make VERSION the active version of NAME (every worker switches on its next request)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name")
        parser.add_argument("version", type=int)
        parser.add_argument(
            "--allow-new-shape",
            action="store_true",
            help="Allow another task, feature count, feature names or classes than the active version's.",
        )

    def handle(self, *args: object, name: str, version: int, allow_new_shape: bool, **options: object) -> None:
        try:
            model_activate(name=name, version=version, allow_new_shape=allow_new_shape)
        except NotFound as exc:
            raise CommandError(exc.message) from exc
        except ShapeChange as exc:
            raise CommandError(f"{exc}; pass --allow-new-shape if that is meant") from exc
        self.stdout.write(f"{name} v{version} is now active")
