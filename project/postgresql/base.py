"""Django's PostgreSQL backend, with a cheaper check of pooled connections.

Django's pool checks every connection it hands out with a round trip to the server (an empty
query), so that one broken by a server restart is never used: a round trip on every request.
Here a connection gets that round trip only when there is a reason to doubt it: it has been idle
for POOL_CHECK_IDLE_SECONDS (1 s), or something arrived on its socket while it sat in the pool.
An idle connection receives nothing unless the server is ending it (a restart sends each one a
termination notice and closes it), so a broken connection is still never handed out, and a
restart costs only the requests in flight.

ENGINE = "project.postgresql"; everything else is Django's own backend.
"""

from __future__ import annotations

import select
import time
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db.backends.base.base import NO_DB_ALIAS
from django.db.backends.postgresql import base

_RETURNED_AT = "_mlserve_returned_at"


def _check_when_in_doubt(connection: Any) -> None:
    from psycopg_pool import ConnectionPool

    idle = time.monotonic() - getattr(connection, _RETURNED_AT, 0.0)
    if idle >= settings.POOL_CHECK_IDLE_SECONDS or _has_news(connection):
        ConnectionPool.check_connection(connection)  # raises if it is broken: the pool discards it


def _has_news(connection: Any) -> bool:
    """Something waits to be read on an idle connection's socket (a termination notice, EOF)."""
    try:
        readable, _, _ = select.select([connection.fileno()], [], [], 0)
    except (OSError, ValueError):  # closed already
        return True
    return bool(readable)


class DatabaseWrapper(base.DatabaseWrapper):
    @property
    def pool(self) -> Any:
        """Django 5.2's pool property, with the check above instead of a check on every use."""
        pool_options = self.settings_dict["OPTIONS"].get("pool")
        if self.alias == NO_DB_ALIAS or not pool_options:
            return None
        # Django's own pools, one per alias (private, used on purpose): its close_pool() finds ours there.
        pools: dict[str, Any] = self._connection_pools  # type: ignore[attr-defined]  # private, not in the stubs
        if self.alias not in pools:
            if self.settings_dict.get("CONN_MAX_AGE", 0) != 0:
                raise ImproperlyConfigured("Pooling doesn't support persistent connections.")
            from psycopg_pool import ConnectionPool

            connect_kwargs = self.get_connection_params()
            connect_kwargs["autocommit"] = True  # Django sets it properly later on
            pool = ConnectionPool(
                kwargs=connect_kwargs,
                open=False,  # not in the process that imports this (gunicorn's master): in each worker
                configure=self._configure_connection,  # type: ignore[attr-defined]  # private: Django's pool uses it
                check=_check_when_in_doubt if self.settings_dict["CONN_HEALTH_CHECKS"] else None,
                **({} if pool_options is True else pool_options),
            )
            pools.setdefault(self.alias, pool)
        return pools[self.alias]

    def _close(self) -> None:
        if self.connection is not None and self.pool:
            setattr(self.connection, _RETURNED_AT, time.monotonic())
        super()._close()  # type: ignore[misc]  # Django's private hook, absent from its stubs
