from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone

model_name_validator = RegexValidator(
    r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$", "Letters, digits, '.', '_' and '-', starting with a letter or digit."
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


class Prediction(models.Model):
    """One call to POST /api/v1/predictions/: who asked, which model, what came back."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="predictions")
    model_version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="predictions")
    # Copied from model_version so the list filters need no join.
    model_name = models.CharField(max_length=100)
    version = models.PositiveIntegerField()
    n_rows = models.PositiveIntegerField()
    inputs = models.JSONField(null=True, blank=True, help_text="Input rows, when STORE_PREDICTION_INPUTS is on.")
    outputs = models.JSONField()
    probabilities = models.JSONField(null=True, blank=True)
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
