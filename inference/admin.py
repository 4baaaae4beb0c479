from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from inference.models import Generation, ModelVersion, Prediction, SentimentCall
from inference.serializers import prediction_detail_representation
from inference.services import ShapeChange, model_activate
from project.admin_tools import ReadOnlyAdmin
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
    actions = ["activate"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    @admin.action(description="Make the selected version active")
    def activate(self, request: HttpRequest, queryset: QuerySet[ModelVersion]) -> None:
        for version in queryset:
            try:
                model_activate(name=version.name, version=version.version)
            except ShapeChange as exc:
                hint = f"manage.py activate_model {version.name} {version.version} --allow-new-shape"
                self.message_user(request, f"Not activated: {exc}. If that is meant: {hint}", messages.ERROR)
                continue
            self.message_user(request, f"{version} is now active", messages.SUCCESS)


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
