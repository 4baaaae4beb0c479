from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone

_MODEL_NAME = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}"
# One rule, anchored two ways: the OpenAPI document's (ECMA regex, where $ is the string's end)
# and Python's, whose $ also matches before a final newline (it let "iris\n" through), so \A \Z.
MODEL_NAME_PATTERN = f"^{_MODEL_NAME}$"
MODEL_NAME_PYTHON_PATTERN = rf"\A{_MODEL_NAME}\Z"
model_name_validator = RegexValidator(
    MODEL_NAME_PYTHON_PATTERN, "Letters, digits, '.', '_' and '-', starting with a letter or digit."
)


class Task(models.TextChoices):
    CLASSIFICATION = "classification"
    REGRESSION = "regression"


class ModelVersion(models.Model):
    """One registered joblib file: version N of the model called `name`.

    At most one version of a name is active; it answers requests that name no version.
    """

    name = models.CharField(max_length=100, validators=[model_name_validator])
    version = models.PositiveIntegerField()
    task = models.CharField(max_length=20, choices=Task.choices)
    # Relative to settings.MODEL_DIR, so the store can move between machines.
    file = models.CharField(max_length=500)
    sha256 = models.CharField(max_length=64)
    n_features = models.PositiveIntegerField()
    feature_names = models.JSONField(null=True, blank=True)
    classes = models.JSONField(null=True, blank=True)
    is_active = models.BooleanField(default=False)
    registered_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    registered_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name", "-version"]
        constraints = [
            models.UniqueConstraint(fields=["name", "version"], name="model_version_unique"),
            models.UniqueConstraint(fields=["name"], condition=Q(is_active=True), name="one_active_version_per_model"),
        ]

    def __str__(self) -> str:
        return f"{self.name} v{self.version}"


# How many outputs a prediction keeps beside the full ones, for lists: a page of predictions
# reads these, never a batch's full columns, so its cost does not grow with batch size.
OUTPUTS_HEAD = 10


class Prediction(models.Model):
    """One call to POST /api/v1/predictions/: who asked, which model, what came back."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="predictions")
    model_version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="predictions")
    # Copied from model_version so the list filters need no join.
    model_name = models.CharField(max_length=100)
    version = models.PositiveIntegerField()
    n_rows = models.PositiveIntegerField()
    # Typed arrays, not JSON (inference/storage.py): what the model read and wrote, compactly.
    inputs = models.BinaryField(
        null=True, blank=True, help_text="Input rows as float64, when STORE_PREDICTION_INPUTS is on."
    )
    outputs = models.BinaryField(help_text="Class indices (int16, or int32), or values (float64).")
    probabilities = models.BinaryField(null=True, blank=True, help_text="float64, a row per input row.")
    outputs_head = models.JSONField(null=True, blank=True, help_text=f"The first {OUTPUTS_HEAD} outputs, for lists.")
    latency_ms = models.FloatField(help_text="Time spent in the model.")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [
            models.Index(fields=["user", "-created_at", "-id"], name="prediction_user_recent"),
            models.Index(fields=["model_name", "version", "-created_at"], name="prediction_model_recent"),
            models.Index(fields=["-created_at", "-id"], name="prediction_recent"),
        ]

    def __str__(self) -> str:
        return f"prediction {self.pk} ({self.model_name} v{self.version})"


class SentimentCall(models.Model):
    """One call to POST /api/v1/sentiment/ (one text or a batch)."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    backend = models.CharField(max_length=20, help_text="local, openai, or local after an openai failure (hybrid).")
    model = models.CharField(max_length=100)
    n_texts = models.PositiveIntegerField()
    texts = models.JSONField(null=True, blank=True, help_text="The texts, when STORE_TEXTS is on.")
    results = models.JSONField()
    cached = models.BooleanField(default=False)
    prompt_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0)
    latency_ms = models.FloatField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [
            models.Index(fields=["user", "-created_at"], name="sentiment_user_recent"),
            models.Index(fields=["-created_at"], name="sentiment_recent"),
        ]

    def __str__(self) -> str:
        return f"sentiment {self.pk} ({self.backend})"


class Generation(models.Model):
    """One text generation: POST /api/v1/generations/ or the OpenAI-compatible /v1/chat/completions."""

    class Route(models.TextChoices):
        GENERATIONS = "generations"
        CHAT_COMPLETIONS = "chat.completions"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    route = models.CharField(max_length=20, choices=Route.choices)
    backend = models.CharField(max_length=20, default="openai")
    model = models.CharField(max_length=100)
    prompt = models.JSONField(null=True, blank=True, help_text="Prompt or messages, when STORE_TEXTS is on.")
    # null is "not stored" (STORE_TEXTS off), which an empty output is not.
    output = models.TextField(null=True, blank=True, help_text="The generated text, when STORE_TEXTS is on.")  # noqa: DJ001
    max_tokens = models.PositiveIntegerField(null=True, blank=True)
    temperature = models.FloatField(null=True, blank=True)
    stream = models.BooleanField(default=False)
    cached = models.BooleanField(default=False)
    finish_reason = models.CharField(max_length=30, blank=True)
    prompt_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0)
    error_code = models.CharField(max_length=50, blank=True, help_text="Set when a stream failed part-way.")
    latency_ms = models.FloatField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [
            models.Index(fields=["user", "-created_at"], name="generation_user_recent"),
            models.Index(fields=["-created_at"], name="generation_recent"),
        ]

    def __str__(self) -> str:
        return f"generation {self.pk} ({self.model})"


class IdempotencyRecord(models.Model):
    """One `Idempotency-Key` a caller sent on a creating POST, and the answer it got.

    Claimed ("running") before the request runs, so a second request with the key waits its
    turn (409); given the answer ("done") in the same commit as what the request created where
    it can be (a prediction), so a retry after a lost answer gets that answer, not a second
    prediction. A request that fails gives its key back. Kept for IDEMPOTENCY_KEY_HOURS.
    """

    class State(models.TextChoices):
        RUNNING = "running"
        DONE = "done"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=255)
    fingerprint = models.CharField(max_length=64, help_text="SHA-256 of the route and the request body.")
    token = models.CharField(max_length=32, help_text="Which claim holds the key (a random value per claim).")
    state = models.CharField(max_length=10, choices=State.choices)
    locked_until = models.DateTimeField(help_text="A running claim older than this was cut off and can be taken.")
    status = models.PositiveSmallIntegerField(null=True, blank=True)
    content_type = models.CharField(max_length=100, blank=True)
    body = models.BinaryField(null=True, blank=True, help_text="The answer's bytes, replayed as they were.")
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(db_index=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "key"], name="idempotency_key_per_user")]

    def __str__(self) -> str:
        return f"{self.key} ({self.state})"
