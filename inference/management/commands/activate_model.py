from django.core.management.base import BaseCommand, CommandError

from inference.services import model_activate
from project.errors import NotFound


class Command(BaseCommand):
    help = "Make VERSION the active version of NAME (every worker switches on its next request)."

    def add_arguments(self, parser: object) -> None:
        parser.add_argument("name")
        parser.add_argument("version", type=int)

    def handle(self, *args: object, name: str, version: int, **options: object) -> None:
        try:
            model_activate(name=name, version=version)
        except NotFound as exc:
            raise CommandError(exc.message) from exc
        self.stdout.write(f"{name} v{version} is now active")
