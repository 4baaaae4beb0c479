from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from inference.services import RegistrationError, model_register


class Command(BaseCommand):
    help = (
        "Register a joblib file as the next version of NAME. Only register files you trust: "
        "loading a joblib file runs code."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name")
        parser.add_argument("path", type=Path)
        parser.add_argument("--activate", action="store_true", help="Make it the active version.")
        parser.add_argument("--feature-names", help="Comma-separated feature names, in column order.")
        parser.add_argument("--by", help="Username of the staff member registering it (recorded).")
        parser.add_argument(
            "--allow-new-shape",
            action="store_true",
            help="Allow another task, feature count, feature names or classes than the last version's.",
        )

    def handle(
        self,
        *args: object,
        name: str,
        path: Path,
        activate: bool,
        feature_names: str | None,
        by: str | None,
        allow_new_shape: bool,
        **o: object,
    ) -> None:
        names = [n.strip() for n in feature_names.split(",")] if feature_names else None
        registered_by = None
        if by is not None:
            registered_by = get_user_model().objects.filter(username=by, is_staff=True).first()
            if registered_by is None:
                raise CommandError(f"--by {by}: no staff user of that name")
        try:
            version = model_register(
                name=name,
                source=path,
                activate=activate,
                feature_names=names,
                registered_by=registered_by,
                allow_new_shape=allow_new_shape,
            )
        except (RegistrationError, ValidationError) as exc:
            raise CommandError(str(exc)) from exc
        state = "active" if version.is_active else "not active"
        self.stdout.write(f"registered {version} ({version.task}, {version.n_features} features, {state})")
