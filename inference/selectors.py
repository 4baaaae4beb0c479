"""Reads of the model registry and the prediction history."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from django.contrib.auth.models import AbstractUser
from django.db.models import QuerySet, TextField
from django.db.models.functions import Cast

from inference.models import ModelVersion, Prediction, model_name_validator
from project import freshness
from project.errors import NotFound

_MAX_BIGINT = 2**63 - 1
_NAME = re.compile(model_name_validator.regex.pattern)


def model_list() -> QuerySet[ModelVersion]:
    """The active version of every model, by name."""
    return ModelVersion.objects.filter(is_active=True).order_by("name")


def model_versions_by_name(*, names: list[str]) -> dict[str, list[int]]:
    versions: dict[str, list[int]] = {name: [] for name in names}
    rows = ModelVersion.objects.filter(name__in=names).order_by("name", "version").values_list("name", "version")
    for name, version in rows:
        versions[name].append(version)
    return versions


_model_versions: freshness.ProcessCache[freshness.Row | None] = freshness.ProcessCache(freshness.MODELS)


def model_version_current(*, name: str, version: int | None, stamps: freshness.Stamps | None) -> ModelVersion:
    """model_version_get from this worker's copy while the `models` freshness stamp says it is
    current: activating a version reaches every worker on its next request, without a query."""
    if not _NAME.match(name):
        return model_version_get(name=name, version=version)  # raises NotFound, with the reason

    def load() -> freshness.Row | None:
        try:
            return freshness.row_of(model_version_get(name=name, version=version))
        except NotFound:
            return None

    row = _model_versions.get((name, version), stamps, load)
    if row is None:
        return model_version_get(name=name, version=version)  # the reason, from the database
    return freshness.instance_of(ModelVersion, row)


def model_version_get(*, name: str, version: int | None = None) -> ModelVersion:
    """The active version of `name`, or the given version; NotFound names what is unknown."""
    if not _NAME.match(name):  # e.g. a NUL, which PostgreSQL refuses to even compare
        raise NotFound(f"No model named {name!r}.", details={"model": [f"unknown model {name!r}"]})
    query = ModelVersion.objects.filter(name=name)
    found = query.filter(version=version).first() if version is not None else query.filter(is_active=True).first()
    if found is not None:
        return found
    if version is not None and query.exists():
        raise NotFound(f"Model '{name}' has no version {version}.", details={"version": [f"unknown version {version}"]})
    raise NotFound(f"No model named '{name}'.", details={"model": [f"unknown model '{name}'"]})


def prediction_list(
    *,
    user: AbstractUser,
    model: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> QuerySet[Prediction]:
    """The user's predictions (everyone's for staff), newest first: their summaries only.

    A batch's inputs, outputs and probabilities can be megabytes each; a page reads the first
    outputs kept beside them (outputs_head), so what it costs does not grow with batch size.
    """
    query = Prediction.objects.only(*_SUMMARY_FIELDS)
    if not user.is_staff:
        query = query.filter(user=user)
    if model:
        query = query.filter(model_name=model)
    if since is not None:
        query = query.filter(created_at__gte=since)
    if until is not None:
        query = query.filter(created_at__lt=until)
    return query.select_related("user").order_by("-created_at", "-id")


_SUMMARY_FIELDS = ("id", "model_name", "version", "n_rows", "outputs_head", "created_at", "user__username")
_STORED_AS_TEXT = ("inputs", "outputs", "probabilities")


def prediction_get(*, user: AbstractUser, pk: int) -> dict[str, Any]:
    """One prediction of the user's own (any, for staff); someone else's is NotFound, not 403.

    Its summary fields, with the batch columns as the JSON text the database holds (keys
    `<column>_json`, None when not stored): passed on as they are, never decoded into millions
    of Python objects, so reading a 10,000-row batch costs about the size of its answer.
    """
    if not 0 < pk <= _MAX_BIGINT:
        raise NotFound("No such prediction.")
    query = Prediction.objects.filter(pk=pk)
    if not user.is_staff:
        query = query.filter(user=user)
    found = (
        query.annotate(**{f"{name}_json": Cast(name, TextField()) for name in _STORED_AS_TEXT})
        .values(
            "id",
            "model_name",
            "version",
            "n_rows",
            "created_at",
            "user__username",
            *(f"{name}_json" for name in _STORED_AS_TEXT),
        )
        .first()
    )
    if found is None:
        raise NotFound("No such prediction.")
    return found
