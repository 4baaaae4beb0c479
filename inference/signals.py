"""Any saved or deleted model version, alias or roll-out makes every worker's copies stale
(project/freshness.py); services that write with UPDATE (model_activate) bump the stamp themselves."""

from __future__ import annotations

from typing import Any

from django.db.models.signals import post_delete, post_save

from inference.models import ModelAlias, ModelVersion, Rollout
from project import freshness


def _model_versions_changed(sender: Any, **kwargs: Any) -> None:
    freshness.bump(freshness.MODELS)


def connect() -> None:
    for model in (ModelVersion, ModelAlias, Rollout):
        label = model._meta.model_name
        post_save.connect(_model_versions_changed, sender=model, dispatch_uid=f"freshness-{label}-save")
        post_delete.connect(_model_versions_changed, sender=model, dispatch_uid=f"freshness-{label}-delete")
