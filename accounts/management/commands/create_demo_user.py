"""Create the demo account for `make run`, printing its random password once."""

import secrets

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandParser


class Command(BaseCommand):
    help = "Create the demo account (a staff superuser) with a random password, printed once."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--username", default="demo")

    def handle(self, *args: object, username: str, **options: object) -> None:
        User = get_user_model()
        if User.objects.filter(username=username).exists():
            self.stdout.write(
                f"Demo account '{username}' exists; its password was printed when it was made. "
                f"Set a new one with: python manage.py changepassword {username}"
            )
            return
        password = secrets.token_urlsafe(18)
        User.objects.create_superuser(username=username, email="", password=password)
        bar = "=" * 72
        self.stdout.write(
            f"{bar}\nDemo account created (shown this once, not stored anywhere):\n"
            f"  username: {username}\n  password: {password}\n"
            f"For the README's curl lines:  export DEMO_PASSWORD='{password}'\n{bar}"
        )
