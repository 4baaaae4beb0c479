from __future__ import annotations

from typing import Any

from django.conf import settings
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from inference.models import ModelVersion, Prediction, model_name_validator
from project.errors import PayloadTooLarge

# --- input --------------------------------------------------------------------------


@extend_schema_field(
    {
        "oneOf": [
            {"type": "array", "items": {"type": "number"}},
            {"type": "object", "additionalProperties": {"type": "number"}},
        ],
        "example": [5.1, 3.5, 1.4, 0.2],
    }
)
class _ParsedJSONField(serializers.JSONField):
    """A value taken as the JSON parser gave it. DRF's JSONField re-encodes every value with the
    standard library to prove it is JSON: a parsed body is, and on a 1,000-row batch that proof
    cost more than the model. inference.features checks the rows themselves."""

    def to_internal_value(self, data: Any) -> Any:
        return data


class RowField(_ParsedJSONField):
    """One row: an array of numbers in feature order, or an object of feature name to number."""


@extend_schema_field(
    {
        "type": "array",
        "items": {
            "oneOf": [
                {"type": "array", "items": {"type": "number"}},
                {"type": "object", "additionalProperties": {"type": "number"}},
            ]
        },
        "example": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]],
    }
)
class RowsField(_ParsedJSONField):
    """A batch of rows."""


class PredictionCreateSerializer(serializers.Serializer):
    model = serializers.CharField(required=False, max_length=100, help_text="Default: the service's default model.")
    version = serializers.IntegerField(required=False, min_value=1, help_text="Default: the active version.")
    features = RowField(required=False)
    instances = RowsField(required=False)

    def validate_features(self, value: Any) -> Any:
        if not isinstance(value, (list, dict)):
            raise serializers.ValidationError("Expected an array of numbers or an object of feature values.")
        return value

    def validate_instances(self, value: Any) -> Any:
        if not isinstance(value, list):
            raise serializers.ValidationError("Expected an array of rows.")
        if not value:
            raise serializers.ValidationError("Expected at least one row.")
        limit = settings.MAX_BATCH_ROWS
        if len(value) > limit:
            # Too large rather than invalid: the same rows split in smaller batches would do.
            raise PayloadTooLarge(
                f"The batch has {len(value)} rows; the limit is {limit}.",
                details={"instances": [f"at most {limit} rows per request"]},
            )
        return value

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        has_features, has_instances = "features" in attrs, "instances" in attrs
        if has_features == has_instances:
            message = "Send exactly one of 'features' (one row) or 'instances' (a batch)."
            raise serializers.ValidationError({"features": [message], "instances": [message]})
        return attrs


class PredictionFilterSerializer(serializers.Serializer):
    model = serializers.CharField(required=False, max_length=100, validators=[model_name_validator])
    since = serializers.DateTimeField(required=False, help_text="ISO 8601; predictions at or after it.")
    until = serializers.DateTimeField(required=False, help_text="ISO 8601; predictions before it.")

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if "since" in attrs and "until" in attrs and attrs["since"] > attrs["until"]:
            raise serializers.ValidationError({"until": ["Must not be before 'since'."]})
        return attrs


# --- output -------------------------------------------------------------------------


class ModelSerializer(serializers.ModelSerializer):
    versions = serializers.SerializerMethodField()

    class Meta:
        model = ModelVersion
        fields = [
            "name",
            "task",
            "version",
            "versions",
            "n_features",
            "feature_names",
            "classes",
            "sha256",
            "registered_at",
        ]

    @extend_schema_field({"type": "array", "items": {"type": "integer"}})
    def get_versions(self, obj: ModelVersion) -> list[int]:
        return self.context["versions"].get(obj.name, [obj.version])


class PredictionSerializer(serializers.ModelSerializer):
    model = serializers.CharField(source="model_name")
    prediction = serializers.JSONField(source="outputs")
    rows = serializers.IntegerField(source="n_rows")
    user = serializers.CharField(source="user.username", default=None)

    class Meta:
        model = Prediction
        fields = ["id", "model", "version", "prediction", "probabilities", "rows", "user", "created_at"]
        read_only_fields = fields


class PredictionDetailSerializer(PredictionSerializer):
    class Meta(PredictionSerializer.Meta):
        fields = [*PredictionSerializer.Meta.fields, "inputs"]
        read_only_fields = fields


_DATETIME = serializers.DateTimeField()


def prediction_representation(prediction: Prediction) -> dict[str, Any]:
    """What PredictionSerializer renders, without its per-call field machinery (the hot path)."""
    return {
        "id": prediction.pk,
        "model": prediction.model_name,
        "version": prediction.version,
        "prediction": prediction.outputs,
        "probabilities": prediction.probabilities,
        "rows": prediction.n_rows,
        "user": prediction.user.username if prediction.user_id else None,
        "created_at": _DATETIME.to_representation(prediction.created_at),
    }
