"""Reads of the model registry and the prediction history."""

from __future__ import annotations

import re
from datetime import datetime

from django.contrib.auth.models import User
from django.db.models import QuerySet

from inference.models import (
    ALIAS_PYTHON_PATTERN,
    MODEL_NAME_PYTHON_PATTERN,
    ModelAlias,
    ModelChange,
    ModelVersion,
    Prediction,
    Rollout,
)
from project.errors import InvalidInput, NotFound

_MAX_BIGINT = 2**63 - 1
MODEL_NAME = re.compile(MODEL_NAME_PYTHON_PATTERN)
ALIAS = re.compile(ALIAS_PYTHON_PATTERN)


def model_list() -> QuerySet[ModelVersion]:
    """The active version of every model, by name."""
    return ModelVersion.objects.filter(is_active=True).order_by("name")


def model_versions_by_name(*, names: list[str]) -> dict[str, list[int]]:
    versions: dict[str, list[int]] = {name: [] for name in names}
    rows = ModelVersion.objects.filter(name__in=names).order_by("name", "version").values_list("name", "version")
    for name, version in rows:
        versions[name].append(version)
    return versions


def model_version_get(*, name: str, version: int | None = None) -> ModelVersion:
    """The active version of `name`, or the given version; NotFound names what is unknown."""
    if not MODEL_NAME.match(name):  # e.g. a NUL, which PostgreSQL refuses to even compare
        raise NotFound(f"No model named {name!r}.", details={"model": [f"unknown model {name!r}"]})
    query = ModelVersion.objects.filter(name=name)
    found = query.filter(version=version).first() if version is not None else query.filter(is_active=True).first()
    if found is not None:
        return found
    if version is not None and query.exists():
        raise NotFound(f"Model '{name}' has no version {version}.", details={"version": [f"unknown version {version}"]})
    raise NotFound(f"No model named '{name}'.", details={"model": [f"unknown model '{name}'"]})


def split_alias(model: str) -> tuple[str, str | None]:
    """("iris", "production") for "iris@production"; (model, None) for a name alone."""
    name, at, alias = model.partition("@")
    return (name, alias) if at else (model, None)


def model_version_named(*, model: str, version: int | None = None) -> ModelVersion:
    """What a request names: `name`, `name` with a version, or `name@alias`."""
    name, alias = split_alias(model)
    if alias is None:
        return model_version_get(name=name, version=version)
    if version is not None:
        raise InvalidInput(
            "Name a version or an alias, not both.",
            details={"version": [f"'{model}' names an alias; leave the version out"]},
        )
    return model_version_by_alias(name=name, alias=alias)


def model_version_by_alias(*, name: str, alias: str) -> ModelVersion:
    if MODEL_NAME.match(name) and ALIAS.match(alias):
        found = ModelAlias.objects.select_related("model_version").filter(name=name, alias=alias).first()
        if found is not None:
            return found.model_version
    shown = f"{name}@{alias}"
    raise NotFound(f"No model alias {shown!r}.", details={"model": [f"unknown alias {shown!r}"]})


def alias_list(*, name: str) -> QuerySet[ModelAlias]:
    return ModelAlias.objects.filter(name=name).select_related("model_version", "updated_by").order_by("alias")


def rollout_get(*, name: str) -> Rollout | None:
    return Rollout.objects.select_related("canary", "shadow", "started_by").filter(name=name).first()


def model_changes(*, name: str, limit: int = 50) -> list[ModelChange]:
    return list(ModelChange.objects.filter(name=name).select_related("changed_by")[:limit])


def prediction_list(
    *,
    user: User,
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
        name, alias = split_alias(model)
        if alias is None:
            query = query.filter(model_name=model)
        else:  # the predictions of the version the alias points at now
            query = query.filter(model_version=model_version_by_alias(name=name, alias=alias))
    if since is not None:
        query = query.filter(created_at__gte=since)
    if until is not None:
        query = query.filter(created_at__lt=until)
    return query.select_related("user").order_by("-created_at", "-id")


_SUMMARY_FIELDS = ("id", "model_name", "version", "n_rows", "outputs_head", "created_at", "user__username")


def prediction_get(*, user: User, pk: int) -> Prediction:
    """One prediction of the user's own (any, for staff), with its model version (to decode its
    arrays); someone else's is NotFound, not 403."""
    if not 0 < pk <= _MAX_BIGINT:
        raise NotFound("No such prediction.")
    query = Prediction.objects.select_related("user", "model_version").filter(pk=pk)
    if not user.is_staff:
        query = query.filter(user=user)
    found = query.first()
    if found is None:
        raise NotFound("No such prediction.")
    return found
