"""Writes of a model's roll-out, by staff: aliases, a canary and a shadow, rollback. Every change
is audited (inference.models.ModelChange) and bumps the models' freshness stamp, so every worker
routes by it from its next request (inference/routing.py)."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import User
from django.db import transaction

from inference.models import ModelAlias, ModelChange, ModelVersion, Rollout
from inference.selectors import model_version_get
from inference.services import model_activate, model_change_record, shape_changes
from project import freshness
from project.errors import AppError, InvalidInput, NotFound


class NoPreviousVersion(AppError):
    status_code = 409
    code = "no_previous_version"
    default_message = "There is no earlier active version to roll back to."


def alias_set(*, name: str, alias: str, version: int, by: User | None, via: str) -> ModelAlias:
    """Point `name@alias` at `version` (made if new)."""
    with transaction.atomic():
        target = model_version_get(name=name, version=version)
        found = ModelAlias.objects.select_for_update().filter(name=name, alias=alias).first()
        before = None if found is None else found.model_version.version
        if found is None:
            found = ModelAlias(name=name, alias=alias)
        found.model_version, found.updated_by = target, by
        found.updated_at = model_change_record(
            name=name,
            action=ModelChange.Action.ALIAS_SET,
            alias=alias,
            from_version=before,
            to_version=target.version,
            by=by,
            via=via,
        ).changed_at
        found.save()
        freshness.bump(freshness.MODELS)
    return found


def alias_delete(*, name: str, alias: str, by: User | None, via: str) -> None:
    with transaction.atomic():
        found = ModelAlias.objects.select_for_update().select_related("model_version").filter(name=name, alias=alias)
        existing = found.first()
        if existing is None:
            raise NotFound(f"No model alias '{name}@{alias}'.")
        model_change_record(
            name=name,
            action=ModelChange.Action.ALIAS_DELETED,
            alias=alias,
            from_version=existing.model_version.version,
            by=by,
            via=via,
        )
        existing.delete()
        freshness.bump(freshness.MODELS)


def rollout_set(
    *,
    name: str,
    canary_version: int | None,
    canary_percent: float,
    shadow_version: int | None,
    by: User | None,
    via: str,
) -> Rollout:
    """Start (or change) `name`'s roll-out. The canary and the shadow must answer the same
    requests as the active version (its task, features and classes), and differ from it."""
    if canary_version is None and shadow_version is None:
        raise InvalidInput("Give a canary, a shadow, or both.", details={"canary": ["give a canary or a shadow"]})
    with transaction.atomic():
        active = model_version_get(name=name)
        canary = _rollout_version(active, canary_version, "canary")
        shadow = _rollout_version(active, shadow_version, "shadow")
        rollout, _created = Rollout.objects.select_for_update().get_or_create(name=name)
        rollout.canary, rollout.canary_percent = canary, canary_percent if canary is not None else 0
        rollout.shadow, rollout.started_by = shadow, by
        rollout.save()
        model_change_record(
            name=name,
            action=ModelChange.Action.ROLLOUT_SET,
            from_version=active.version,
            by=by,
            via=via,
            details=rollout_description(rollout),
        )
        freshness.bump(freshness.MODELS)
    return rollout


def rollout_check(*, name: str, canary_version: int | None, shadow_version: int | None) -> None:
    """rollout_set's checks alone (the admin's form shows their message before saving)."""
    active = model_version_get(name=name)
    _rollout_version(active, canary_version, "canary")
    _rollout_version(active, shadow_version, "shadow")


def _rollout_version(active: ModelVersion, version: int | None, role: str) -> ModelVersion | None:
    if version is None:
        return None
    found = model_version_get(name=active.name, version=version)
    if found.pk == active.pk:
        raise InvalidInput(
            f"Version {version} is the active version; a {role} is another version.",
            details={role: [f"version {version} is already active"]},
        )
    if changes := shape_changes(active, found):
        raise InvalidInput(
            f"{found} does not answer the same requests as {active} ({'; '.join(changes)}).",
            details={role: [f"another shape than the active version: {'; '.join(changes)}"]},
        )
    return found


def rollout_end(*, name: str, by: User | None, via: str) -> None:
    with transaction.atomic():
        rollout = Rollout.objects.select_for_update().filter(name=name).first()
        if rollout is None:
            raise NotFound(f"Model '{name}' has no roll-out.")
        model_change_record(
            name=name,
            action=ModelChange.Action.ROLLOUT_ENDED,
            by=by,
            via=via,
            details=rollout_description(rollout),
        )
        rollout.delete()
        freshness.bump(freshness.MODELS)


def rollout_description(rollout: Rollout) -> dict[str, Any]:
    canary = shadow = None
    if rollout.canary is not None:
        canary = {"version": rollout.canary.version, "percent": rollout.canary_percent}
    if rollout.shadow is not None:
        shadow = {"version": rollout.shadow.version}
    return {"canary": canary, "shadow": shadow}


def model_rollback(*, name: str, by: User | None, via: str) -> tuple[ModelVersion, int]:
    """Put back the version that was active before the current one: (now active, rolled back from).

    The audit is a stack: the current version's own activation says what it replaced, so
    rolling back twice from v3 (activated over v2, itself over v1) gives v2, then v1.
    """
    with transaction.atomic():
        current = model_version_get(name=name)
        ModelVersion.objects.select_for_update().filter(pk=current.pk).first()  # one rollback at a time
        arrival = (
            ModelChange.objects.filter(
                name=name, action=ModelChange.Action.ACTIVATED, to_version=current.version, from_version__isnull=False
            )
            .order_by("-changed_at", "-id")
            .first()
        )
        previous = None if arrival is None else arrival.from_version
        if previous is None or not ModelVersion.objects.filter(name=name, version=previous).exists():
            raise NoPreviousVersion(f"{current} has no earlier active version to roll back to.")
        restored = model_activate(
            name=name,
            version=previous,
            allow_new_shape=True,  # it was serving these clients before
            by=by,
            via=via,
            action=ModelChange.Action.ROLLED_BACK,
        )
    return restored, current.version
