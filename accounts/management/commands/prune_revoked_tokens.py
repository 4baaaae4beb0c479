from django.core.management.base import BaseCommand
from django.utils import timezone

from accounts.models import RevokedToken


class Command(BaseCommand):
    help = "Delete revoked refresh-token ids whose tokens have expired anyway."

    def handle(self, *args: object, **options: object) -> None:
        deleted, _ = RevokedToken.objects.filter(expires_at__lt=timezone.now()).delete()
        self.stdout.write(f"deleted {deleted} expired revoked-token rows")
