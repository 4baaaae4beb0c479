"""`manage.py migrate` (the first step of `make run`) against a database it cannot use: one line
saying what to do, never a traceback (project/database_check.py)."""

from __future__ import annotations

import os
import shlex
import shutil
import socket
import subprocess
import sys
import urllib.parse
import uuid
from pathlib import Path

import psycopg
import pytest
from django.conf import settings
from django.db import connections

from project.database_check import database_problem

ROOT = Path(__file__).resolve().parents[2]
DB = settings.DATABASES["default"]


def _url(*, name: str, port: int | None = None) -> str:
    credentials = urllib.parse.quote(DB["USER"] or "")
    if DB["PASSWORD"]:
        credentials += ":" + urllib.parse.quote(DB["PASSWORD"])
    return f"postgres://{credentials}@{DB['HOST'] or '127.0.0.1'}:{port or DB['PORT'] or 5432}/{name}"


def _migrate(database_url: str) -> tuple[int, list[str]]:
    """`python manage.py migrate` as `make run` runs it; its exit code and every line it printed."""
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "project.settings.dev", "DATABASE_URL": database_url}
    result = subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return result.returncode, (result.stdout + result.stderr).strip().splitlines()


def _admin() -> psycopg.Connection:
    return psycopg.connect(
        host=DB["HOST"] or None,
        port=DB["PORT"] or None,
        user=DB["USER"] or None,
        password=DB["PASSWORD"] or None,
        dbname="postgres",
        autocommit=True,
    )


def test_a_missing_database_is_one_line_with_the_createdb_command() -> None:
    name = f"mlserve_missing_{uuid.uuid4().hex[:8]}"

    code, lines = _migrate(_url(name=name))

    assert code == 1
    assert len(lines) == 1, lines
    assert "Traceback" not in lines[0]
    host, port, user = DB["HOST"] or "127.0.0.1", DB["PORT"] or 5432, DB["USER"]
    assert lines[0] == (
        f"error: database '{name}' does not exist at {host}:{port}; "
        f"create it with:  createdb -h {host} -p {port} -U {user} {name}"
    )


@pytest.mark.skipif(shutil.which("createdb") is None, reason="PostgreSQL's createdb client is not installed")
def test_the_printed_createdb_command_creates_the_database() -> None:
    name = f"mlserve_missing_{uuid.uuid4().hex[:8]}"
    _, lines = _migrate(_url(name=name))
    command = shlex.split(lines[0].split("create it with:", 1)[1])

    env = {**os.environ, "PGPASSWORD": DB["PASSWORD"] or ""}
    try:
        subprocess.run(command, env=env, check=True, timeout=30)
        with _admin() as admin:
            assert admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
    finally:
        with _admin() as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}"')


def test_no_server_at_the_address_is_one_line() -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    code, lines = _migrate(_url(name="mlserve", port=port))

    assert code == 1
    assert len(lines) == 1, lines
    assert lines[0].startswith(
        f"error: cannot connect to PostgreSQL at {DB['HOST'] or '127.0.0.1'}:{port} (DATABASE_URL): "
    )
    assert "Traceback" not in lines[0]


def test_a_database_that_exists_passes() -> None:
    params = connections["default"].get_connection_params()

    assert database_problem({**params, "dbname": "postgres"}) is None
    assert "does not exist" in database_problem({**params, "dbname": f"mlserve_missing_{uuid.uuid4().hex[:8]}"})
