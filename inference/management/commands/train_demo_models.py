from django.core.management.base import BaseCommand, CommandParser

from inference.training import demo_models_train


class Command(BaseCommand):
    help = "Train the demo models (iris: a classifier; diabetes: a regressor) and register them."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--if-missing", action="store_true", help="Only models with no usable active version.")

    def handle(self, *args: object, if_missing: bool, **options: object) -> None:
        registered = demo_models_train(only_missing=if_missing)
        for version in registered:
            self.stdout.write(f"registered {version} ({version.task}, {version.n_features} features)")
        if not registered:
            self.stdout.write("demo models already registered")
