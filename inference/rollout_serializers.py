"""Bodies and answers of the roll-out routes: aliases, canary and shadow, activation, rollback."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from inference.models import ModelAlias, ModelChange
from project.fields import StrictBooleanField, StrictFloatField, StrictIntegerField


class VersionSerializer(serializers.Serializer):
    version = StrictIntegerField(min_value=1, max_value=2**31 - 1)


class ActivateSerializer(VersionSerializer):
    allow_new_shape = StrictBooleanField(
        required=False, default=False, help_text="Allow a version of another task, features or classes."
    )


class CanarySerializer(VersionSerializer):
    percent = StrictFloatField(min_value=0, max_value=100, help_text="The share of default requests it answers.")


class RolloutSetSerializer(serializers.Serializer):
    canary = CanarySerializer(required=False, allow_null=True)
    shadow = VersionSerializer(required=False, allow_null=True)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if not attrs.get("canary") and not attrs.get("shadow"):
            message = "Give a canary, a shadow, or both."
            raise serializers.ValidationError({"canary": [message], "shadow": [message]})
        return attrs


class RolloutSerializer(serializers.Serializer):
    """A model's roll-out (documents inference.services.rollout_description, plus who and when)."""

    name = serializers.CharField()
    canary = CanarySerializer(allow_null=True)
    shadow = VersionSerializer(allow_null=True)
    started_by = serializers.CharField(allow_null=True)
    started_at = serializers.DateTimeField(allow_null=True)


class AliasSerializer(serializers.ModelSerializer):
    version = serializers.IntegerField(source="model_version.version")
    updated_by = serializers.CharField(source="updated_by.username", default=None, allow_null=True)

    class Meta:
        model = ModelAlias
        fields = ["name", "alias", "version", "updated_by", "updated_at"]
        read_only_fields = fields


class ModelChangeSerializer(serializers.ModelSerializer):
    changed_by = serializers.CharField(source="changed_by.username", default=None, allow_null=True)

    class Meta:
        model = ModelChange
        fields = ["action", "alias", "from_version", "to_version", "details", "changed_by", "via", "changed_at"]
        read_only_fields = fields


class ActiveVersionSerializer(serializers.Serializer):
    """The answer of activate and rollback."""

    name = serializers.CharField()
    version = serializers.IntegerField(help_text="The active version now.")
    previous = serializers.IntegerField(allow_null=True, help_text="The version that was active before.")


class _LatencySerializer(serializers.Serializer):
    p50 = serializers.FloatField(allow_null=True)
    p95 = serializers.FloatField(allow_null=True)


class _ShadowRunsSerializer(serializers.Serializer):
    runs = serializers.IntegerField()
    failed = serializers.IntegerField()
    rows = serializers.IntegerField()
    agreement = serializers.FloatField(
        allow_null=True, help_text="Classifiers: the share of rows where the shadow gave the answered class."
    )
    mean_abs_diff = serializers.FloatField(
        allow_null=True, help_text="Regressors: the mean absolute difference from the answered value."
    )
    latency_ms = _LatencySerializer(help_text="Time in the shadow model.")
    answered_latency_ms = _LatencySerializer(help_text="Time the answering model took on the same rows.")


class _VersionComparisonSerializer(serializers.Serializer):
    version = serializers.IntegerField()
    roles = serializers.ListField(child=serializers.CharField(), help_text="active, canary, shadow (now).")
    requests = serializers.IntegerField(help_text="Requests this version answered.")
    errors = serializers.IntegerField(help_text="Answers with status 400 and up.")  # type: ignore[assignment]
    error_rate = serializers.FloatField()
    rows = serializers.IntegerField()
    latency_ms = _LatencySerializer(help_text="Whole-request latency of the requests it answered.")
    shadow = _ShadowRunsSerializer(allow_null=True)


class RolloutCompareSerializer(serializers.Serializer):
    """Documents analytics.rollouts.rollout_compare."""

    model = serializers.CharField()
    start = serializers.DateTimeField()
    end = serializers.DateTimeField()
    active = serializers.IntegerField()
    canary = CanarySerializer(allow_null=True)
    shadow = VersionSerializer(allow_null=True)
    versions = _VersionComparisonSerializer(many=True)
