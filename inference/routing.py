"""Which version answers a prediction, and which one shadows it.

A request names a model three ways: `iris` (the default: the active version, or its canary for a
share of requests), `iris` with a version, or `iris@production` (an alias). Only default requests
take part in a roll-out: a client that pinned a version or an alias gets exactly that.

Everything here is read through this worker's copies (project/freshness.py), so a moved alias, a
new canary or a rollback reaches every worker on its next request without a query per request.
"""

from __future__ import annotations

import math
import os
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass

from inference.models import ModelVersion
from inference.selectors import (
    ALIAS,
    MODEL_NAME,
    model_version_by_alias,
    model_version_get,
    rollout_get,
    split_alias,
)
from project import freshness
from project.errors import InvalidInput, NotFound


@dataclass(frozen=True)
class Route:
    model_version: ModelVersion  # answers the request
    shadow: ModelVersion | None = None  # runs on a copy of it, after the answer is sent


@dataclass(frozen=True)
class _Plan:
    """A model's roll-out, as this worker copies it."""

    canary: ModelVersion | None
    percent: float
    shadow: ModelVersion | None


_versions: freshness.ProcessCache[ModelVersion | None] = freshness.ProcessCache(freshness.MODELS)
_plans: freshness.ProcessCache[_Plan | None] = freshness.ProcessCache(freshness.MODELS)


def resolve(*, model: str, version: int | None, stamps: freshness.Stamps | None) -> Route:
    """The version that answers a request naming `model` (and maybe `version`), and its shadow."""
    name, alias = split_alias(model)
    if alias is not None:
        if version is not None:
            raise InvalidInput(
                "Name a version or an alias, not both.",
                details={"version": [f"'{model}' names an alias; leave the version out"]},
            )
        return Route(_copy(("alias", name, alias), stamps, lambda: model_version_by_alias(name=name, alias=alias)))
    answering = _copy(("version", name, str(version)), stamps, lambda: model_version_get(name=name, version=version))
    if version is not None:
        return Route(answering)
    plan = _plans.get(name, stamps, lambda: _plan_of(name))
    if plan is None:
        return Route(answering)
    if plan.canary is not None and canary_split.take(name, plan.percent):
        answering = plan.canary
    return Route(answering, shadow=plan.shadow)


def _copy(key: tuple[str, ...], stamps: freshness.Stamps | None, load: Callable[[], ModelVersion]) -> ModelVersion:
    """The version `load` finds, from this worker's copy while it is current. Names that cannot
    be a model or an alias are not remembered (each would be an entry), and an unknown one is
    looked up again for its reason."""
    if not MODEL_NAME.match(key[1]) or (key[0] == "alias" and not ALIAS.match(key[2])):
        return load()  # raises NotFound, with the reason

    def found() -> ModelVersion | None:
        try:
            return load()
        except NotFound:
            return None

    copy = _versions.get(key, stamps, found)
    return copy if copy is not None else load()


def _plan_of(name: str) -> _Plan | None:
    rollout = rollout_get(name=name)
    if rollout is None or (rollout.canary is None and rollout.shadow is None):
        return None
    return _Plan(canary=rollout.canary, percent=rollout.canary_percent, shadow=rollout.shadow)


class CanarySplit:
    """Which default requests of a model its canary answers.

    The n-th such request of a worker goes to the canary when floor(n * percent / 100) steps up:
    exactly `percent` of every worker's requests, to within one request, spread evenly rather
    than in runs (a random draw per request is only right on average: at 10% of 10,000 requests
    it strays by 0.3 points, one time in three). Each worker starts its count at a random n, so
    workers do not step together.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._next: dict[str, int] = {}
        self._pid = os.getpid()

    def take(self, name: str, percent: float) -> bool:
        with self._lock:
            if self._pid != os.getpid():  # a forked worker: its own count
                self._next, self._pid = {}, os.getpid()
            n = self._next.get(name)
            if n is None:
                n = random.randrange(1_000_000)  # noqa: S311 - spreading, not secrecy
            self._next[name] = n + 1
        return math.floor((n + 1) * percent / 100) > math.floor(n * percent / 100)


canary_split = CanarySplit()
