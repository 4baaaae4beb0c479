"""Before `migrate`: a database that cannot be used is one line saying why, not a traceback.

Without this, `DATABASE_URL=postgres://.../nonexistent make run` ends in some ninety lines: the
pool retries for DATABASE_POOL_TIMEOUT, then Django's traceback, with the reason in a log line
above it. One direct connection, made with the parameters Django would use, tells the cases apart
and names what to do: a database that is not there (with the `createdb` line that makes it), a
server that does not answer, or anything else the server said, in its own first line.

manage.py runs this before `migrate`, the first command that touches the database in `make run`
and in a deployment's release step. Only PostgreSQL is checked: SQLite makes its file itself.
"""

from __future__ import annotations

import shlex
import sys
from typing import Any

import psycopg
from django.db import connections

CONNECT_TIMEOUT_SECONDS = 5


def database_problem(params: dict[str, Any]) -> str | None:
    """One line saying why a psycopg connection with these parameters cannot be made, or None."""
    params = {"connect_timeout": CONNECT_TIMEOUT_SECONDS, **params}
    try:
        psycopg.connect(**params).close()
    except psycopg.Error as exc:
        reason = _first_line(exc)
    else:
        return None

    name = params.get("dbname") or "postgres"
    where = _server(params)
    try:
        # The maintenance database says whether ours exists, in any server language.
        with psycopg.connect(**{**params, "dbname": "postgres"}) as admin:
            exists = admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
    except psycopg.Error:
        return f"error: cannot connect to PostgreSQL at {where} (DATABASE_URL): {reason}"
    if exists:
        return f"error: cannot use database {name!r} at {where} (DATABASE_URL): {reason}"
    return f"error: database {name!r} does not exist at {where}; create it with:  {_createdb(params, name)}"


def exit_unless_database_usable(alias: str = "default") -> None:
    connection = connections[alias]
    if connection.vendor != "postgresql":
        return
    problem = database_problem(connection.get_connection_params())
    if problem:
        sys.exit(problem)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return " ".join(text.splitlines()[0].split()) if text else exc.__class__.__name__


def _server(params: dict[str, Any]) -> str:
    host = params.get("host") or "the local socket"
    return f"{host}:{params['port']}" if params.get("port") else str(host)


def _createdb(params: dict[str, Any], name: str) -> str:
    words = ["createdb"]
    for flag, key in (("-h", "host"), ("-p", "port"), ("-U", "user")):
        if params.get(key):
            words += [flag, str(params[key])]
    return shlex.join([*words, name])
