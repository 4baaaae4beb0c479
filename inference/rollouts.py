"""Writes of a model's roll-out, by staff: aliases, a canary and a shadow, rollback. Every change
is audited (inference.models.ModelChange) and bumps the models' freshness stamp, so every worker
routes by it from its next request (inference/routing.py)."""

from __future__ import annotations

from django.contrib.auth.models import User
from django.db import transaction

from inference import runtime
from inference.models import ModelAlias, ModelChange, ModelVersion, Rollout
from inference.selectors import ALIAS, MODEL_NAME, model_version_get
from inference.services import Switch, model_change_record, model_switch, rollout_description, shape_changes
from project import freshness
from project.errors import AppError, InvalidInput, NotFound


class NoPreviousVersion(AppError):
    status_code = 409
    code = "no_previous_version"
    default_message = "There is no earlier active version to roll back to."


def alias_set(*, name: str, alias: str, version: int, by: User | None, via: str) -> ModelAlias:
    """Point `name@alias` at `version` (made if new; two at once: one makes it, the other moves it)."""
    with transaction.atomic():
        target = model_version_get(name=name, version=version)
        found, created = ModelAlias.objects.select_for_update().get_or_create(
            name=name, alias=alias, defaults={"model_version": target, "updated_by": by}
        )
        before = None if created else found.model_version.version
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
    if not MODEL_NAME.match(name) or not ALIAS.match(alias):  # e.g. a NUL, which PostgreSQL refuses
        raise NotFound(f"No model alias {f'{name}@{alias}'!r}.")
    with transaction.atomic():
        found = ModelAlias.objects.select_for_update().select_related("model_version").filter(name=name, alias=alias)
        existing = found.first()
        if existing is None:
            raise NotFound(f"No model alias {f'{name}@{alias}'!r}.")
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
    if (
        active.classes is not None
        and runtime.load(found).gives_probabilities != runtime.load(active).gives_probabilities
    ):
        gives = "gives" if runtime.load(active).gives_probabilities else "gives no"
        raise InvalidInput(
            f"{active} {gives} probabilities and {found} does not do the same.",
            details={role: ["answers with probabilities where the active version does not, or the other way"]},
        )
    return found


def rollout_end(*, name: str, by: User | None, via: str) -> None:
    if not MODEL_NAME.match(name):
        raise NotFound(f"No model named {name!r}.")
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


def model_rollback(*, name: str, by: User | None, via: str) -> Switch:
    """Put back the version that was active before the current one.

    An undo stack: each rollback undoes the activation that made the current version active
    (and says which, in its audit row), so activations already undone are skipped. v3 activated
    over v2, itself over v1: rollback gives v2, then v1, then NoPreviousVersion.
    """
    model_version_get(name=name)  # NotFound for a name no model has (before PostgreSQL sees it)
    with transaction.atomic():
        current = ModelVersion.objects.select_for_update().filter(name=name, is_active=True).first()
        if current is None:
            model_version_get(name=name)  # raises NotFound, with the reason
            raise NoPreviousVersion(f"Model '{name}' has no active version.")
        undone = [
            change.details["undid"]
            for change in ModelChange.objects.filter(name=name, action=ModelChange.Action.ROLLED_BACK)
            if isinstance(change.details, dict) and "undid" in change.details
        ]
        arrival = (
            ModelChange.objects.filter(
                name=name, action=ModelChange.Action.ACTIVATED, to_version=current.version, from_version__isnull=False
            )
            .exclude(pk__in=undone)
            .order_by("-changed_at", "-id")
            .first()
        )
        previous = None if arrival is None else arrival.from_version
        if arrival is None or previous is None or not ModelVersion.objects.filter(name=name, version=previous).exists():
            raise NoPreviousVersion(f"{current} has no earlier active version to roll back to.")
        return model_switch(
            name=name,
            version=previous,
            allow_new_shape=True,  # it was serving these clients before
            by=by,
            via=via,
            action=ModelChange.Action.ROLLED_BACK,
            details={"undid": arrival.pk},
        )
