"""Liveness and readiness, for load balancers and orchestrators. No credentials needed.

Readiness checks the database (a connection from the pool within READINESS_TIMEOUT_SECONDS)
and the cache here; apps add their own checks (the models) with `register_readiness_check`, so
this module depends on none of them.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import DatabaseError, connection
from django.http import HttpRequest, JsonResponse

from project.errors import error_body

logger = logging.getLogger(__name__)

Check = Callable[[], str | None]  # None when fine, else what is wrong, in words
_app_checks: dict[str, Check] = {}


def register_readiness_check(name: str, check: Check) -> None:
    """Add a check /readyz runs once the database answers (an app's AppConfig.ready does this)."""
    _app_checks[name] = check


def healthz(request: HttpRequest) -> JsonResponse:
    """200 while the process can answer at all."""
    return JsonResponse({"status": "ok"})


def _check_database() -> tuple[str | None, dict[str, Any]]:
    """(problem, pool figures): a connection within the readiness timeout, and SELECT 1 on it."""
    pool = getattr(connection, "pool", None)
    timeout = settings.READINESS_TIMEOUT_SECONDS
    try:
        if pool is None:
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1")
            return None, {}
        from psycopg_pool import PoolTimeout

        pool.open()  # a no-op once open; a worker may be asked before its first query
        try:
            with pool.connection(timeout=timeout) as raw:
                raw.execute("SELECT 1")
        except PoolTimeout:
            logger.error("readiness: no database connection within %ss", timeout)
            return f"no connection free within {timeout:g} s", _pool_figures(pool)
        return None, _pool_figures(pool)
    except (DatabaseError, OSError) as exc:
        logger.error("readiness: database unavailable: %s", exc.__class__.__name__)
        return "unreachable", {}
    except Exception as exc:  # psycopg's own errors when the pool connects outside Django's wrapper
        if exc.__class__.__module__.startswith("psycopg"):
            logger.error("readiness: database unavailable: %s", exc.__class__.__name__)
            return "unreachable", {}
        raise


def _pool_figures(pool: Any) -> dict[str, Any]:
    stats = pool.get_stats()
    return {
        "size": stats.get("pool_size", 0),
        "max": stats.get("pool_max", 0),
        "available": stats.get("pool_available", 0),
        "waiting": stats.get("requests_waiting", 0),
    }


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


def readiness_problems() -> dict[str, str]:
    """What is not usable (the database, the cache, a registered check), by name; empty when ready."""
    return _problems()[0]


def _problems() -> tuple[dict[str, str], dict[str, Any]]:
    problems: dict[str, str] = {}
    database, pool = _check_database()
    if database is not None:
        problems["database"] = database
    if (problem := _check_cache()) is not None:
        problems["cache"] = problem
    if "database" not in problems:
        for name, check in _app_checks.items():
            if (problem := check()) is not None:
                problems[name] = problem
    return problems, pool


def readyz(request: HttpRequest) -> JsonResponse:
    """200 when the database, the cache and every registered check are fine; else 503 naming what failed."""
    problems, pool = _problems()
    if problems:
        names = ", ".join(sorted(problems))
        details: dict[str, Any] = {k: [v] for k, v in problems.items()}
        if pool and "database" in problems:  # the figures say why no connection was free
            details["pool"] = pool
        return JsonResponse(error_body("not_ready", f"Not ready: {names}.", details), status=503)
    checks = {"database": "ok", "cache": "ok", **dict.fromkeys(_app_checks, "ok")}
    return JsonResponse({"status": "ready", "checks": checks, **({"pool": pool} if pool else {})})
