from datetime import datetime

from django.conf import settings
from django.db import models
from django.utils import timezone


class RevokedToken(models.Model):
    """A refresh token that was logged out or rotated away.

    Only the token's id (jti) is kept, never the token: a jti cannot be used to log in.
    Rows past `expires_at` are useless (the token would be refused as expired anyway) and
    `manage.py prune_revoked_tokens` deletes them.
    """

    jti = models.CharField(max_length=255, unique=True)
    expires_at = models.DateTimeField(db_index=True)
    revoked_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.jti


class ApiKey(models.Model):
    """A credential for programs: belongs to a user, who it acts as.

    Only a SHA-256 of the key is kept. The key itself is shown once, when it is made. A key is
    high-entropy random, so a fast hash is safe and a slow password hash per request is not
    needed (see accounts/keys.py).
    """

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=16, unique=True, help_text="The key's visible start, to tell keys apart.")
    key_hash = models.CharField(max_length=64)
    rate = models.CharField(max_length=20, blank=True, help_text='Its own rate limit, e.g. "100/m"; blank: default.')
    # Generation limits (inference/budgets.py); null: none.
    token_budget_tokens = models.PositiveBigIntegerField(
        null=True, blank=True, help_text="Tokens (prompt and completion) it may use per budget period."
    )
    token_budget_period = models.CharField(
        max_length=5, blank=True, choices=[("day", "day"), ("month", "month")], help_text="A UTC day or month."
    )
    tokens_per_minute = models.PositiveIntegerField(null=True, blank=True)
    max_parallel = models.PositiveIntegerField(null=True, blank=True, help_text="Generations it may have open at once.")
    created_at = models.DateTimeField(default=timezone.now)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "API key"
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["user", "-created_at"], name="apikey_user_recent")]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None

    def is_usable(self, *, now: datetime) -> bool:
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > now)
