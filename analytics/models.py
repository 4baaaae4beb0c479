from django.conf import settings
from django.db import models
from django.utils import timezone

from analytics.histogram import BINS


class RequestLog(models.Model):
    """One row per request to /api/, /v1/ and /v2/models/, whatever its answer. Append-only.

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
    model_version = models.PositiveIntegerField(
        null=True, blank=True, help_text="The version that answered a prediction (roll-outs compare them)."
    )
    rows = models.PositiveIntegerField(default=0, help_text="Rows predicted.")
    prompt_tokens = models.PositiveIntegerField(default=0, help_text="Upstream tokens spent (not for cached answers).")
    completion_tokens = models.PositiveIntegerField(default=0)
    cost = models.FloatField(
        default=0, db_default=0, help_text="The tokens' estimated cost at the prices when recorded (project.prices)."
    )
    unpriced_tokens = models.PositiveIntegerField(
        default=0, db_default=0, help_text="Tokens of a model the price table has no price for."
    )
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


class Dimension(models.TextChoices):
    TOTAL = "total"
    ENDPOINT = "endpoint"
    MODEL = "model"
    USER = "user"
    API_KEY = "api_key"
    STATUS = "status"


class Granularity(models.TextChoices):
    HOUR = "hour"
    DAY = "day"


class UsageRollup(models.Model):
    """Request-log totals for one hour or one day, for everyone (scope_user_id 0) or one user,
    for one value of one dimension (the endpoint "POST v1:prediction-list", the model "iris"...).

    The analytics API reads these, never the raw log, so its cost follows the number of
    distinct values per hour or day rather than the traffic; day rows let a 30-day question
    read 30 rows per value instead of 720. `h00`..`h59` count requests per latency bin
    (analytics.histogram); percentiles come from their sums.
    """

    granularity = models.CharField(max_length=4, choices=Granularity.choices)
    bucket = models.DateTimeField(help_text="The start of the hour or day (UTC).")
    scope_user_id = models.BigIntegerField(help_text="0 for everyone, else the one user these rows count.")
    dimension = models.CharField(max_length=10, choices=Dimension.choices)
    value = models.CharField(max_length=150, blank=True)
    requests = models.PositiveIntegerField(default=0)
    errors = models.PositiveIntegerField(default=0, help_text="Answers with status 400 and up.")
    server_errors = models.PositiveIntegerField(default=0, help_text="Answers with status 500 and up.")
    latency_sum_ms = models.FloatField(default=0)
    rows = models.BigIntegerField(default=0)
    predictions = models.PositiveIntegerField(default=0)
    prompt_tokens = models.BigIntegerField(default=0)
    completion_tokens = models.BigIntegerField(default=0)
    cost = models.FloatField(default=0)
    unpriced_tokens = models.BigIntegerField(default=0)
    # One column per histogram bin, so that one SQL SUM per column adds histograms up.
    for _index in range(BINS):
        locals()[f"h{_index:02d}"] = models.PositiveIntegerField(default=0)
    del _index
    # The same bins packed (analytics.histogram.PACKED_SQL), for reading many rows at once; set by
    # aggregation on PostgreSQL, NULL elsewhere (and read from the columns then).
    bins = models.BinaryField(null=True, editable=False)

    class Meta:
        constraints = [
            # Also the index every analytics query uses: scope, dimension, granularity, then time.
            models.UniqueConstraint(
                fields=["scope_user_id", "dimension", "granularity", "bucket", "value"], name="usage_rollup_unique"
            )
        ]

    def __str__(self) -> str:
        return f"{self.granularity} {self.bucket:%Y-%m-%d %H:00} {self.dimension}={self.value}"


class AggregationState(models.Model):
    """One row: how far the rollups are complete, and from when raw rows were purged."""

    aggregated_until = models.DateTimeField(
        null=True, help_text="Rollups hold every request that started before this (and had been recorded)."
    )
    purged_before = models.DateTimeField(null=True, help_text="Raw request-log rows before this were deleted.")
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"aggregated until {self.aggregated_until}"
