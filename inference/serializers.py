from __future__ import annotations

from typing import Any

from django.conf import settings
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from inference import storage
from inference.models import OUTPUTS_HEAD, ModelVersion, Prediction, model_or_alias_validator
from project.errors import PayloadTooLarge
from project.fields import QueryCharField, QueryDateTimeField, StrictCharField, StrictIntegerField

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


class ModelTargetSerializer(serializers.Serializer):
    """Which model a prediction asks for: valid on its own even when the rest of the body is not,
    so a failed prediction is still counted against the model it was for."""

    model = StrictCharField(
        required=False, max_length=151, help_text="A name, or name@alias. Default: the service's default model."
    )
    version = StrictIntegerField(
        required=False, min_value=1, max_value=2**31 - 1, help_text="Default: the active version."
    )


class PredictionCreateSerializer(ModelTargetSerializer):
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
    model = QueryCharField(
        required=False,
        max_length=151,
        validators=[model_or_alias_validator],
        help_text="A model's name, or name@alias (the version the alias points at now).",
    )
    since = QueryDateTimeField(
        required=False, help_text="ISO 8601; predictions at or after it. In UTC within years 1 to 9999, or a 400."
    )
    until = QueryDateTimeField(
        required=False,
        help_text="ISO 8601; predictions before it. Not before since; in UTC within years 1 to 9999, or a 400.",
    )

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


class PredictionSerializer(serializers.Serializer):
    """The 201 of POST /predictions/ (written by inference/fast_path.py; this documents it)."""

    id = serializers.IntegerField()
    model = serializers.CharField()
    version = serializers.IntegerField()
    prediction = serializers.ListField(child=serializers.JSONField(), help_text="One output per input row.")
    probabilities = serializers.ListField(
        child=serializers.DictField(child=serializers.FloatField()),
        allow_null=True,
        help_text="Per row, each class's probability (classifiers that have them; else null).",
    )
    rows = serializers.IntegerField()
    user = serializers.CharField(allow_null=True)
    created_at = serializers.DateTimeField()


class PredictionDetailSerializer(PredictionSerializer):
    """GET /predictions/{id}/: the whole prediction. Documents prediction_detail_representation."""

    inputs = serializers.ListField(
        child=serializers.ListField(child=serializers.FloatField()),
        allow_null=True,
        help_text="The rows as the model read them (in feature order); null when STORE_PREDICTION_INPUTS is off.",
    )


class PredictionSummarySerializer(serializers.ModelSerializer):
    """One item of GET /predictions/: what a page shows of a prediction, whatever its batch size;
    the whole of it is at `url`."""

    url = serializers.HyperlinkedIdentityField(view_name="v1:prediction-detail")
    model = serializers.CharField(source="model_name")
    rows = serializers.IntegerField(source="n_rows")
    first_outputs = serializers.JSONField(
        source="outputs_head", help_text=f"The first outputs (at most {OUTPUTS_HEAD}); all of them are at `url`."
    )
    user = serializers.CharField(source="user.username", default=None)

    class Meta:
        model = Prediction
        fields = ["id", "url", "model", "version", "rows", "first_outputs", "user", "created_at"]
        read_only_fields = fields


_DATETIME = serializers.DateTimeField()


def prediction_detail_representation(prediction: Prediction) -> dict[str, Any]:
    """What PredictionDetailSerializer documents: the stored arrays turned back into the values
    the answer had (inference/storage.py). At most MAX_BATCH_ROWS rows, one numpy pass each."""
    version = prediction.model_version
    classes = version.classes if version.task == "classification" else None
    stored_probabilities = prediction.probabilities
    probabilities = None
    if stored_probabilities is not None and classes is not None:  # only a classifier has them
        probabilities = storage.decode_probabilities(stored_probabilities, classes)
    return {
        "id": prediction.pk,
        "model": prediction.model_name,
        "version": prediction.version,
        "prediction": storage.decode_outputs(prediction.outputs, classes),
        "probabilities": probabilities,
        "rows": prediction.n_rows,
        "user": prediction.user.username if prediction.user is not None else None,
        "created_at": _DATETIME.to_representation(prediction.created_at),
        "inputs": None if prediction.inputs is None else storage.decode_matrix(prediction.inputs, version.n_features),
    }
