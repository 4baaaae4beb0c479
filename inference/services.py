"""Writes: registering and activating models (predictions are made in inference/fast_path.py)."""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import joblib
from django.contrib.auth.models import User
from django.db import IntegrityError, transaction
from django.db.models import Max

from inference import runtime
from inference.models import ModelChange, ModelVersion, Rollout, model_name_validator
from inference.selectors import model_version_get
from project import freshness


class RegistrationError(Exception):
    """A model file that cannot be registered, with the reason in words."""


def model_register(
    *,
    name: str,
    source: Path,
    registered_by: User | None = None,
    activate: bool = False,
    feature_names: list[str] | None = None,
    allow_new_shape: bool = False,
) -> ModelVersion:
    """Register a trusted joblib file as the next version of `name`.

    The file is copied into MODEL_DIR under its checksum, so the registered bytes can never be
    changed by editing the original. The first version of a name is always active. Operators
    only: joblib runs code when it loads, so this must never take a client's upload.

    A new version answers the same requests as the last one: the same task, features and classes
    (feature names carry over when the file has none). Anything else would break every client of
    the name at once, so it is refused unless `allow_new_shape` says it is meant.
    """
    model_name_validator(name)
    # Read once: the bytes that are described, hashed and stored are the same bytes.
    try:
        data = Path(source).read_bytes()
    except OSError as exc:
        raise RegistrationError(f"{source}: cannot be read ({exc.strerror})") from exc
    try:
        facts = runtime.describe_estimator(joblib.load(io.BytesIO(data)))
    except Exception as exc:  # unpickling can fail in any number of ways
        raise RegistrationError(f"{source}: not a fitted scikit-learn model ({exc})") from exc
    if feature_names is not None:
        if len(feature_names) != facts["n_features"]:
            raise RegistrationError(f"{len(feature_names)} feature names given for {facts['n_features']} features")
        facts["feature_names"] = list(feature_names)
    # Compared with what clients are served now: the active version.
    active = ModelVersion.objects.filter(name=name, is_active=True).first()
    if active is not None:
        if facts["feature_names"] is None and facts["n_features"] == active.n_features:
            facts["feature_names"] = active.feature_names
        changes = _shape_changes(active, facts)
        if changes and not allow_new_shape:
            raise RegistrationError(
                f"a new version of {name} would change what clients send or get back from {active} "
                f"({'; '.join(changes)}); pass --allow-new-shape if that is meant"
            )

    sha256 = hashlib.sha256(data).hexdigest()
    relative = f"{name}/{sha256}.joblib"
    destination = runtime.model_path(relative)
    destination.parent.mkdir(parents=True, exist_ok=True)
    if not destination.exists():
        partial = destination.with_suffix(".partial")
        partial.write_bytes(data)
        partial.replace(destination)  # atomic: a reader never sees half a file

    for _attempt in range(3):  # two registrations of one name at once: the loser retries
        try:
            with transaction.atomic():
                latest = ModelVersion.objects.filter(name=name).aggregate(v=Max("version"))["v"]
                is_first = latest is None
                if activate and not is_first:
                    ModelVersion.objects.filter(name=name, is_active=True).update(is_active=False)
                registered = ModelVersion.objects.create(
                    name=name,
                    version=(latest or 0) + 1,
                    file=relative,
                    sha256=sha256,
                    is_active=activate or is_first,
                    registered_by=registered_by,
                    **facts,
                )
                if registered.is_active:
                    model_change_record(
                        name=name,
                        action=ModelChange.Action.ACTIVATED,
                        from_version=None if active is None else active.version,
                        to_version=registered.version,
                        by=registered_by,
                        via="command",
                    )
                return registered
        except IntegrityError:
            continue
    raise RegistrationError(f"could not register a new version of {name}: concurrent registrations")


def _shape_changes(latest: ModelVersion, facts: dict[str, Any]) -> list[str]:
    return [
        f"{field} {getattr(latest, field)!r} -> {facts[field]!r}"
        for field in ("task", "n_features", "feature_names", "classes")
        if getattr(latest, field) != facts[field]
    ]


class ShapeChange(Exception):
    """Activating a version would change what the name's clients send or get back."""


def model_activate(
    *,
    name: str,
    version: int,
    allow_new_shape: bool = False,
    by: User | None = None,
    via: str = "command",
) -> ModelVersion:
    """Make `version` the active version of `name`; every worker uses it from its next request.
    The change is audited (who, when, from which version to which).

    A version of another shape (task, features, classes) than the active one is refused unless
    `allow_new_shape`: switching to it is what would break the name's clients.
    """
    return model_switch(name=name, version=version, allow_new_shape=allow_new_shape, by=by, via=via).active


@dataclass(frozen=True)
class Switch:
    active: ModelVersion
    previous: int | None  # the version that was active before (None: none was)


def model_switch(
    *,
    name: str,
    version: int,
    allow_new_shape: bool,
    by: User | None,
    via: str,
    action: str = ModelChange.Action.ACTIVATED,
    details: dict[str, Any] | None = None,
) -> Switch:
    """model_activate, saying which version it replaced (read under the lock that orders switches).

    A roll-out whose canary or shadow is now the active version, or no longer fits it (another
    shape), loses it: such a canary would answer a share of requests differently from the rest.
    """
    with transaction.atomic():
        target = model_version_get(name=name, version=version)
        active = ModelVersion.objects.select_for_update().filter(name=name, is_active=True).first()
        if active is not None and not allow_new_shape and (changes := shape_changes(active, target)):
            raise ShapeChange(
                f"{target} would change what clients send or get back from {active} ({'; '.join(changes)})"
            )
        ModelVersion.objects.filter(name=name, is_active=True).exclude(pk=target.pk).update(is_active=False)
        if not target.is_active:
            target.is_active = True
            target.save(update_fields=["is_active"])
        if active is None or active.pk != target.pk:
            model_change_record(
                name=name,
                action=action,
                from_version=active.version if active is not None else None,
                to_version=target.version,
                by=by,
                via=via,
                details=details,
            )
            _fit_rollout(name=name, active=target, by=by, via=via)
        freshness.bump(freshness.MODELS)
    return Switch(active=target, previous=None if active is None else active.version)


def _fit_rollout(*, name: str, active: ModelVersion, by: User | None, via: str) -> None:
    rollout = (
        Rollout.objects.select_for_update(of=("self",)).select_related("canary", "shadow").filter(name=name).first()
    )
    if rollout is None:
        return
    dropped = []
    for role in ("canary", "shadow"):
        version = getattr(rollout, role)
        if version is not None and (version.pk == active.pk or shape_changes(active, version)):
            setattr(rollout, role, None)
            dropped.append(role)
    if not dropped:
        return
    details = {
        **rollout_description(rollout),
        "reason": f"{active} became active; the {' and '.join(dropped)} no longer differed from it or fitted it",
    }
    if rollout.canary is None and rollout.shadow is None:
        model_change_record(name=name, action=ModelChange.Action.ROLLOUT_ENDED, by=by, via=via, details=details)
        rollout.delete()
        return
    if rollout.canary is None:
        rollout.canary_percent = 0
    rollout.save()
    model_change_record(name=name, action=ModelChange.Action.ROLLOUT_SET, by=by, via=via, details=details)


def rollout_description(rollout: Rollout) -> dict[str, Any]:
    canary = shadow = None
    if rollout.canary is not None:
        canary = {"version": rollout.canary.version, "percent": rollout.canary_percent}
    if rollout.shadow is not None:
        shadow = {"version": rollout.shadow.version}
    return {"canary": canary, "shadow": shadow}


SHAPE_FIELDS = ("task", "n_features", "feature_names", "classes")


def shape_changes(current: ModelVersion, other: ModelVersion) -> list[str]:
    """How `other` differs from `current` in what clients send or get back (empty: it does not)."""
    return _shape_changes(current, {field: getattr(other, field) for field in SHAPE_FIELDS})


def model_change_record(
    *,
    name: str,
    action: str,
    by: User | None,
    via: str,
    alias: str = "",
    from_version: int | None = None,
    to_version: int | None = None,
    details: dict[str, Any] | None = None,
) -> ModelChange:
    """One line of the audit of what staff pointed where (inference.models.ModelChange)."""
    return ModelChange.objects.create(
        name=name,
        action=action,
        alias=alias,
        from_version=from_version,
        to_version=to_version,
        details=details,
        changed_by=by,
        via=via,
    )
