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
    """One call to the upstream: a generation (POST /api/v1/generations/ or the OpenAI-compatible
    /v1/chat/completions), or embeddings (/v1/embeddings: the inputs in `prompt`, no output)."""

    class Route(models.TextChoices):
        GENERATIONS = "generations"
        CHAT_COMPLETIONS = "chat.completions"
        EMBEDDINGS = "embeddings"

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
    usage_estimated = models.BooleanField(
        default=False, help_text="The upstream reported no usage; the tokens are estimated (inference/budgets.py)."
    )
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
    headers = models.JSONField(
        null=True, blank=True, help_text="Headers the answer carried (e.g. OIP's binary framing)."
    )
    body = models.BinaryField(null=True, blank=True, help_text="The answer's bytes, replayed as they were.")
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(db_index=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "key"], name="idempotency_key_per_user")]

    def __str__(self) -> str:
        return f"{self.key} ({self.state})"


_ALIAS = r"[A-Za-z][A-Za-z0-9_-]{0,49}"
# An alias starts with a letter, so it is never mistaken for a version number where either may
# stand (the Open Inference Protocol's /versions/{version}).
ALIAS_PATTERN = f"^{_ALIAS}$"
ALIAS_PYTHON_PATTERN = rf"\A{_ALIAS}\Z"
alias_validator = RegexValidator(
    ALIAS_PYTHON_PATTERN, "A letter, then letters, digits, '_' or '-' (at most 50 characters)."
)

MODEL_OR_ALIAS_PATTERN = f"^{_MODEL_NAME}(@{_ALIAS})?$"
model_or_alias_validator = RegexValidator(
    rf"\A{_MODEL_NAME}(@{_ALIAS})?\Z", "A model's name, or name@alias (e.g. iris@production)."
)


class ModelAlias(models.Model):
    """`name@alias` (e.g. iris@production): a stable name for a version, moved by staff."""

    name = models.CharField(max_length=100, validators=[model_name_validator])
    alias = models.CharField(max_length=50, validators=[alias_validator])
    model_version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="aliases")
    updated_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name_plural = "model aliases"
        ordering = ["name", "alias"]
        constraints = [models.UniqueConstraint(fields=["name", "alias"], name="model_alias_unique")]

    def __str__(self) -> str:
        return f"{self.name}@{self.alias}"


class Rollout(models.Model):
    """A model's roll-out: a canary answering a share of its default requests, and a shadow run
    on a copy of every such request after the answer is sent. One per model name at most."""

    name = models.CharField(max_length=100, unique=True, validators=[model_name_validator])
    canary = models.ForeignKey(ModelVersion, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    canary_percent = models.FloatField(default=0, help_text="The share of default requests the canary answers.")
    shadow = models.ForeignKey(ModelVersion, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    started_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    started_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"roll-out of {self.name}"


class ModelChange(models.Model):
    """The audit of who pointed what where: aliases, activations, rollbacks, roll-outs. Append-only."""

    class Action(models.TextChoices):
        ALIAS_SET = "alias_set"
        ALIAS_DELETED = "alias_deleted"
        ACTIVATED = "activated"
        ROLLED_BACK = "rolled_back"
        ROLLOUT_SET = "rollout_set"
        ROLLOUT_ENDED = "rollout_ended"

    name = models.CharField(max_length=100)
    action = models.CharField(max_length=20, choices=Action.choices)
    alias = models.CharField(max_length=50, blank=True)
    from_version = models.PositiveIntegerField(null=True, blank=True)
    to_version = models.PositiveIntegerField(null=True, blank=True)
    details = models.JSONField(null=True, blank=True, help_text="A roll-out's canary and shadow.")
    changed_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    via = models.CharField(max_length=20, help_text="api, admin or command.")
    changed_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-changed_at", "-id"]
        indexes = [models.Index(fields=["name", "-changed_at"], name="model_change_recent")]

    def __str__(self) -> str:
        return f"{self.name}: {self.action}"


class ShadowPrediction(models.Model):
    """A shadow version's answer to a copy of a request that another version answered: never
    sent to anyone, kept to compare the two (inference/shadow.py)."""

    prediction = models.ForeignKey(Prediction, on_delete=models.CASCADE, related_name="shadows")
    model_version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="+")
    model_name = models.CharField(max_length=100)
    version = models.PositiveIntegerField()
    answered_version = models.PositiveIntegerField(help_text="The version whose answer was sent.")
    n_rows = models.PositiveIntegerField()
    outputs = models.BinaryField(null=True, blank=True, help_text="As a prediction's outputs.")
    agreed_rows = models.PositiveIntegerField(null=True, blank=True, help_text="Classifiers: rows of the same class.")
    abs_diff_sum = models.FloatField(null=True, blank=True, help_text="Regressors: the sum of |shadow - answer|.")
    error_code = models.CharField(max_length=50, blank=True, help_text="Set when the shadow could not answer.")
    latency_ms = models.FloatField(help_text="Time spent in the shadow model.")
    answered_latency_ms = models.FloatField(help_text="Time the answering model spent on the same rows.")
    latency_bin = models.PositiveSmallIntegerField(default=0)
    answered_latency_bin = models.PositiveSmallIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [models.Index(fields=["model_name", "-created_at"], name="shadow_model_recent")]

    def __str__(self) -> str:
        return f"shadow of prediction {self.prediction_id} ({self.model_name} v{self.version})"
