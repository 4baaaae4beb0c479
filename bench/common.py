"""Shared pieces of the benchmarks: a fresh database, the service under its servers, timing."""

from __future__ import annotations

import os
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import requests

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable


def service_env(database_url: str, redis_url: str, **extra: str) -> dict[str, str]:
    """The environment of a production-like service (project.settings.prod)."""
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "project.settings.prod",
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(48),
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "MODEL_DIR": str(ROOT / "var" / "bench-models"),
        # As in production: a JSON line per request (to a file, see _running).
        "LOG_LEVEL": "INFO",
        "LOG_FORMAT": "json",
        # Plain HTTP on the loopback, as behind a TLS-terminating proxy.
        "SECURE_SSL_REDIRECT": "false",
        "SESSION_COOKIE_SECURE": "false",
        "CSRF_COOKIE_SECURE": "false",
        **extra,
    }


def fresh_database(database_url: str) -> None:
    parts = urllib.parse.urlparse(database_url)
    name = parts.path.lstrip("/")
    admin = parts._replace(path="/postgres").geturl()
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def manage(env: dict[str, str], *args: str) -> str:
    result = subprocess.run([PYTHON, "manage.py", *args], cwd=ROOT, env=env, check=True, capture_output=True, text=True)
    return result.stdout


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def _running(command: list[str], env: dict[str, str], base: str) -> Iterator[str]:
    # The server's log goes to a file: a pipe nobody reads would stop the server once full.
    with tempfile.NamedTemporaryFile("w+", prefix="mlserve-bench-", suffix=".log") as log:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=log)
        try:
            deadline = time.monotonic() + 120  # a loaded machine starts slowly
            while time.monotonic() < deadline:
                try:
                    requests.get(f"{base}/healthz", timeout=1)
                    break
                except requests.RequestException:
                    if process.poll() is not None:
                        break
                    time.sleep(0.2)
            else:
                raise RuntimeError(f"the server did not start:\n{Path(log.name).read_text()[-4000:]}")
            if process.poll() is not None:
                raise RuntimeError(f"the server stopped:\n{Path(log.name).read_text()[-4000:]}")
            yield base
        finally:
            process.terminate()
            process.wait(timeout=60)


@contextmanager
def gunicorn(env: dict[str, str], app: str = "project.wsgi:application", *args: str) -> Iterator[str]:
    port = free_port()
    command = [PYTHON, "-m", "gunicorn", app, "--bind", f"127.0.0.1:{port}", *args]
    with _running(command, env, f"http://127.0.0.1:{port}") as base:
        yield base


@contextmanager
def service(env: dict[str, str], *, workers: int, server: str = "production") -> Iterator[str]:
    """This service with `workers` processes: under the production server (project/serve.py),
    or gunicorn's threaded workers (project/gunicorn.py) for comparison."""
    if server == "gunicorn":
        args = ("--config", "python:project.gunicorn", "--workers", str(workers))
        with gunicorn(env, "project.wsgi:application", *args) as base:
            yield base
        return
    port = free_port()
    command = [PYTHON, "-m", "project.serve"]
    env = {**env, "BIND": f"127.0.0.1:{port}", "WEB_CONCURRENCY": str(workers)}
    with _running(command, env, f"http://127.0.0.1:{port}") as base:
        yield base


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


def timed_gets(session: requests.Session, url: str, *, runs: int, warmup: int = 5) -> dict[str, float]:
    for _ in range(warmup):
        session.get(url, timeout=60).raise_for_status()
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        response = session.get(url, timeout=60)
        times.append((time.perf_counter() - started) * 1000)
        response.raise_for_status()
    return {"p50": statistics.median(times), "p95": percentile(times, 0.95), "max": max(times)}
