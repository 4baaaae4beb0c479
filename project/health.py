"""Liveness and readiness, for load balancers and orchestrators. No credentials needed."""

from __future__ import annotations

import logging
import uuid

from django.conf import settings
from django.core.cache import cache
from django.db import DatabaseError, connection
from django.http import HttpRequest, JsonResponse

from inference.readiness import models_ready
from project.errors import error_body

logger = logging.getLogger(__name__)


def healthz(request: HttpRequest) -> JsonResponse:
    """200 while the process can answer at all."""
    return JsonResponse({"status": "ok"})


def _check_database() -> str | None:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except DatabaseError as exc:
        logger.error("readiness: database unavailable: %s", exc.__class__.__name__)
        return "unreachable"
    return None


def _check_cache() -> str | None:
    key = f"readyz:{uuid.uuid4().hex}"
    try:
        cache.set(key, "1", timeout=5)
        ok = cache.get(key) == "1"
        cache.delete(key)
    except Exception as exc:  # each cache backend has its own connection errors
        logger.error("readiness: cache unavailable: %s", exc.__class__.__name__)
        return "unreachable"
    return None if ok else "not storing values"


def readyz(request: HttpRequest) -> JsonResponse:
    """200 when the database, the cache and the models are usable; else 503 naming what failed."""
    problems: dict[str, str] = {}
    if (problem := _check_database()) is not None:
        problems["database"] = problem
    if (problem := _check_cache()) is not None:
        problems["cache"] = problem
    if "database" not in problems and (problem := models_ready(default_model=settings.DEFAULT_MODEL)) is not None:
        problems["models"] = problem
    if problems:
        names = ", ".join(sorted(problems))
        return JsonResponse(
            error_body("not_ready", f"Not ready: {names}.", {k: [v] for k, v in problems.items()}), status=503
        )
    return JsonResponse({"status": "ready", "checks": {"database": "ok", "cache": "ok", "models": "ok"}})
