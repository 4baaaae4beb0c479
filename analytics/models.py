from django.conf import settings
from django.db import models
from django.utils import timezone


class RequestLog(models.Model):
    """One row per request to /api/ and /v1/, whatever its answer. Append-only.

    Never holds a secret: no bodies, no query strings, no headers but the user agent.
    """

    request_id = models.UUIDField()
    created_at = models.DateTimeField(default=timezone.now)
    method = models.CharField(max_length=10)
    path = models.CharField(max_length=255)
    # The route's name (e.g. "v1:prediction-list"): unlike the path, it does not vary by id.
    endpoint = models.CharField(max_length=100, blank=True)
    status = models.PositiveSmallIntegerField()
    error_code = models.CharField(max_length=50, blank=True)
    latency_ms = models.FloatField()
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    auth_method = models.CharField(max_length=20, blank=True, help_text="jwt, api_key, or empty.")
    api_key = models.ForeignKey("accounts.ApiKey", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    client_ip = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=256, blank=True)
    request_bytes = models.PositiveIntegerField(default=0)
    response_bytes = models.PositiveIntegerField(default=0)
    model = models.CharField(max_length=100, blank=True, help_text="The model used, for prediction calls.")
    rows = models.PositiveIntegerField(default=0, help_text="Rows predicted.")
    prompt_tokens = models.PositiveIntegerField(default=0, help_text="Upstream tokens spent (not for cached answers).")
    completion_tokens = models.PositiveIntegerField(default=0)
    # analytics.histogram.bin_of(latency_ms), kept so aggregation groups by it instead of computing it.
    latency_bin = models.PositiveSmallIntegerField(default=0)

    class Meta:
        indexes = [
            models.Index(fields=["-created_at"], name="requestlog_recent"),
            models.Index(fields=["user", "-created_at"], name="requestlog_user_recent"),
            models.Index(fields=["status", "-created_at"], name="requestlog_status_recent"),
            models.Index(fields=["endpoint", "-created_at"], name="requestlog_endpoint_recent"),
        ]

    def __str__(self) -> str:
        return f"{self.method} {self.path} {self.status}"
