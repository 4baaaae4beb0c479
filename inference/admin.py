from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html

from accounts.permissions import authenticated_user
from inference import rollouts
from inference.models import (
    Generation,
    ModelAlias,
    ModelChange,
    ModelVersion,
    Prediction,
    Rollout,
    SentimentCall,
    ShadowPrediction,
)
from inference.serializers import prediction_detail_representation
from inference.services import ShapeChange, model_activate
from project.admin_tools import ReadOnlyAdmin
from project.errors import AppError
from project.json import dumps


class ModelNameFilter(admin.SimpleListFilter):
    """Model names from the small registry table, not a DISTINCT over millions of predictions."""

    title = "model"
    parameter_name = "model"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        names = ModelVersion.objects.order_by("name").values_list("name", flat=True).distinct()
        return [(name, name) for name in names]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        return queryset.filter(model_name=self.value()) if self.value() else queryset


class VersionFilter(admin.SimpleListFilter):
    title = "version"
    parameter_name = "version"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        versions = ModelVersion.objects.order_by("version").values_list("version", flat=True).distinct()
        return [(str(v), f"v{v}") for v in versions]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        value = self.value()
        return queryset.filter(version=int(value)) if value and value.isdigit() else queryset


_ARRAYS = ("inputs", "outputs", "probabilities")


def _shown(value: object) -> str:
    return "-" if value is None else dumps(value).decode()


@admin.register(Prediction)
class PredictionAdmin(ReadOnlyAdmin):
    list_display = ("id", "created_at", "user", "model_name", "version", "n_rows", "latency_ms")
    list_filter = (ModelNameFilter, VersionFilter, ("created_at", admin.DateFieldListFilter), "user")
    search_fields = ("=id", "=user__username", "=model_name")
    list_select_related = ("user",)
    ordering = ("-created_at", "-id")
    # The batch columns are typed arrays (inference/storage.py): shown as the values they hold.
    readonly_fields = [
        *(f.name for f in Prediction._meta.fields if f.name not in _ARRAYS),
        "shown_outputs",
        "shown_probabilities",
        "shown_inputs",
    ]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Prediction]:
        # A page of 50 batches must not load 50 batches: the big columns are read only by the
        # page of the one prediction that shows them.
        return super().get_queryset(request).select_related("model_version").defer(*_ARRAYS)

    @admin.display(description="outputs")
    def shown_outputs(self, prediction: Prediction) -> str:
        return _shown(prediction_detail_representation(prediction)["prediction"])

    @admin.display(description="probabilities")
    def shown_probabilities(self, prediction: Prediction) -> str:
        return _shown(prediction_detail_representation(prediction)["probabilities"])

    @admin.display(description="inputs")
    def shown_inputs(self, prediction: Prediction) -> str:
        return _shown(prediction_detail_representation(prediction)["inputs"])


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    """Registering is done with `manage.py register_model` (a trusted operator's action);
    here staff can see versions and switch the active one."""

    list_display = ("name", "version", "task", "is_active", "n_features", "registered_at", "registered_by")
    list_filter = ("name", "task", "is_active")
    search_fields = ("name",)
    readonly_fields = [f.name for f in ModelVersion._meta.fields]
    actions = ["activate", "rollback"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    @admin.action(description="Make the selected version active")
    def activate(self, request: HttpRequest, queryset: QuerySet[ModelVersion]) -> None:
        for version in queryset:
            try:
                model_activate(name=version.name, version=version.version, by=authenticated_user(request), via="admin")
            except ShapeChange as exc:
                hint = f"manage.py activate_model {version.name} {version.version} --allow-new-shape"
                self.message_user(request, f"Not activated: {exc}. If that is meant: {hint}", messages.ERROR)
                continue
            self.message_user(request, f"{version} is now active", messages.SUCCESS)

    @admin.action(description="Roll back: put back the version active before the current one")
    def rollback(self, request: HttpRequest, queryset: QuerySet[ModelVersion]) -> None:
        for name in sorted(set(queryset.values_list("name", flat=True))):
            try:
                switch = rollouts.model_rollback(name=name, by=authenticated_user(request), via="admin")
            except AppError as exc:
                self.message_user(request, f"{name}: not rolled back: {exc.message}", messages.ERROR)
                continue
            message = f"{name}: v{switch.previous} rolled back to v{switch.active.version}"
            self.message_user(request, message, messages.SUCCESS)


def _same_model(name: str, version: ModelVersion | None, field: str) -> None:
    if version is not None and version.name != name:
        raise forms.ValidationError({field: f"{version} is not a version of {name}."})


class ModelAliasForm(forms.ModelForm):
    class Meta:
        model = ModelAlias
        fields = ("name", "alias", "model_version")

    def clean(self) -> dict:
        data = super().clean() or {}
        _same_model(data.get("name") or self.instance.name, data.get("model_version"), "model_version")
        return data


@admin.register(ModelAlias)
class ModelAliasAdmin(admin.ModelAdmin):
    """name@alias, pointed at a version; every change goes through the audited service."""

    form = ModelAliasForm
    list_display = ("__str__", "model_version", "updated_by", "updated_at")
    list_filter = ("name",)

    def get_readonly_fields(self, request: HttpRequest, obj: ModelAlias | None = None) -> tuple[str, ...]:
        return ("name", "alias") if obj is not None else ()

    def save_model(self, request: HttpRequest, obj: ModelAlias, form: forms.ModelForm, change: bool) -> None:
        saved = rollouts.alias_set(
            name=obj.name,
            alias=obj.alias,
            version=obj.model_version.version,
            by=authenticated_user(request),
            via="admin",
        )
        obj.pk = saved.pk

    def delete_model(self, request: HttpRequest, obj: ModelAlias) -> None:
        rollouts.alias_delete(name=obj.name, alias=obj.alias, by=authenticated_user(request), via="admin")

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[ModelAlias]) -> None:
        for alias in queryset:
            self.delete_model(request, alias)


class RolloutForm(forms.ModelForm):
    class Meta:
        model = Rollout
        fields = ("name", "canary", "canary_percent", "shadow")

    def clean(self) -> dict:
        data = super().clean() or {}
        name = data.get("name") or self.instance.name
        percent = data.get("canary_percent") or 0
        if not 0 <= percent <= 100:
            raise forms.ValidationError({"canary_percent": "Between 0 and 100."})
        canary, shadow = data.get("canary"), data.get("shadow")
        _same_model(name, canary, "canary")
        _same_model(name, shadow, "shadow")
        try:
            rollouts.rollout_check(
                name=name,
                canary_version=canary.version if canary else None,
                shadow_version=shadow.version if shadow else None,
            )
            if canary is None and shadow is None:
                raise forms.ValidationError("Give a canary, a shadow, or both.")
        except AppError as exc:
            raise forms.ValidationError(exc.message) from None
        return data


@admin.register(Rollout)
class RolloutAdmin(admin.ModelAdmin):
    """A canary taking a share of a model's default requests, and a shadow run on copies of them."""

    form = RolloutForm
    list_display = ("name", "canary", "canary_percent", "shadow", "started_by", "started_at")

    def get_readonly_fields(self, request: HttpRequest, obj: Rollout | None = None) -> tuple[str, ...]:
        return ("name",) if obj is not None else ()

    def save_model(self, request: HttpRequest, obj: Rollout, form: forms.ModelForm, change: bool) -> None:
        saved = rollouts.rollout_set(
            name=obj.name,
            canary_version=obj.canary.version if obj.canary else None,
            canary_percent=obj.canary_percent,
            shadow_version=obj.shadow.version if obj.shadow else None,
            by=authenticated_user(request),
            via="admin",
        )
        obj.pk = saved.pk

    def delete_model(self, request: HttpRequest, obj: Rollout) -> None:
        rollouts.rollout_end(name=obj.name, by=authenticated_user(request), via="admin")

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Rollout]) -> None:
        for rollout in queryset:
            self.delete_model(request, rollout)


@admin.register(ModelChange)
class ModelChangeAdmin(ReadOnlyAdmin):
    """The audit: who pointed which alias or active version where, and when."""

    list_display = ("changed_at", "name", "action", "alias", "from_version", "to_version", "changed_by", "via")
    list_filter = ("action", "via")
    search_fields = ("name", "alias")


@admin.register(ShadowPrediction)
class ShadowPredictionAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "created_at",
        "answered",
        "model_name",
        "version",
        "answered_version",
        "n_rows",
        "agreed_rows",
        "abs_diff_sum",
        "error_code",
        "latency_ms",
    )
    list_filter = ("model_name", "version")
    exclude = ("outputs",)

    @admin.display(description="answered prediction")
    def answered(self, shadow: ShadowPrediction) -> str:
        url = reverse("admin:inference_prediction_change", args=[shadow.prediction_id])
        return format_html('<a href="{}">{}</a>', url, shadow.prediction_id)


@admin.register(SentimentCall)
class SentimentCallAdmin(ReadOnlyAdmin):
    list_display = ("id", "created_at", "user", "backend", "model", "n_texts", "cached", "latency_ms")
    list_filter = ("backend", "cached", ("created_at", admin.DateFieldListFilter), "user")
    search_fields = ("=id", "=user__username")
    list_select_related = ("user",)
    ordering = ("-created_at",)
    readonly_fields = [f.name for f in SentimentCall._meta.fields]


@admin.register(Generation)
class GenerationAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "created_at",
        "user",
        "route",
        "model",
        "stream",
        "cached",
        "prompt_tokens",
        "completion_tokens",
        "finish_reason",
        "latency_ms",
    )
    list_filter = ("route", "stream", "cached", ("created_at", admin.DateFieldListFilter), "user")
    search_fields = ("=id", "=user__username", "=model")
    list_select_related = ("user",)
    ordering = ("-created_at",)
    readonly_fields = [f.name for f in Generation._meta.fields]
