"""Fixtures shared by every test: alice, bob and staff, clients that speak for them, and the
demo models registered once per session in the real PostgreSQL test database."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable

import psycopg
import pytest
import redis
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.cache import cache
from rest_framework.test import APIClient

from accounts import ratelimits
from accounts.tokens import RevocableRefreshToken
from inference import fast_path, runtime
from project import freshness

PASSWORD = "correct horse battery staple 42"


def pytest_sessionstart(session: pytest.Session) -> None:
    """Say in one line what is missing, rather than a page of tracebacks per test."""
    db = settings.DATABASES["default"]
    try:
        psycopg.connect(
            host=db["HOST"] or None,
            port=db["PORT"] or None,
            user=db["USER"] or None,
            password=db["PASSWORD"] or None,
            dbname="postgres",
            connect_timeout=3,
        ).close()
    except psycopg.Error as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
        pytest.exit(
            f"PostgreSQL is not reachable at {db['HOST']}:{db['PORT']} ({first_line}); start it or set DATABASE_URL",
            returncode=3,
        )
    try:
        redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=3).ping()
    except redis.RedisError as exc:
        pytest.exit(f"Redis is not reachable at {settings.REDIS_URL} ({exc}); start it or set REDIS_URL", returncode=3)


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup, django_db_blocker, tmp_path_factory):
    """The demo models, trained and registered once; every test starts from this state."""
    from inference.training import demo_models_train

    # A model store of this test run's own, so two runs on one machine do not collide.
    settings.MODEL_DIR = tmp_path_factory.mktemp("models")
    with django_db_blocker.unblock():
        demo_models_train(only_missing=False)


@pytest.fixture(autouse=True)
def _isolation() -> None:
    """Loaded models, cache entries (rate-limit counters), a remembered cache outage and the
    workers' in-process copies of rows never leak from one test into another."""
    runtime.forget_loaded_models()
    freshness.forget_all()
    fast_path.forget_reserved_ids()
    cache.clear()
    ratelimits._store_down_until = 0.0


@pytest.fixture
def committed_demo_models(transactional_db) -> None:
    """For transactional tests: their flush at teardown empties the registry set up once."""
    from inference.training import demo_models_train

    demo_models_train(only_missing=True)


@pytest.fixture
def gunicorn_server(committed_demo_models, tmp_path):
    """Start the service under real worker processes (gunicorn's, or the production server's),
    on the real PostgreSQL and Redis; yields a function `start(workers=...) -> base_url`. The
    servers stop when the test ends."""
    processes: list[subprocess.Popen] = []

    def start(
        workers: int = 4, production_config: bool = False, gunicorn_config: bool = False, **env_overrides: str
    ) -> str:
        """Plain gunicorn workers by default; with gunicorn_config, gunicorn under
        project/gunicorn.py; with production_config, the production server (project/serve.py:
        granian, threaded)."""
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        db = settings.DATABASES["default"]
        password = f":{db['PASSWORD']}" if db["PASSWORD"] else ""
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "project.settings.test",
            "DATABASE_URL": f"postgres://{db['USER']}{password}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
            "REDIS_URL": settings.REDIS_URL,
            "MODEL_DIR": str(settings.MODEL_DIR),
            **env_overrides,
        }
        log = (tmp_path / f"gunicorn-{port}.log").open("w")
        if production_config:
            env.update({"BIND": f"127.0.0.1:{port}", "WEB_CONCURRENCY": str(workers)})
            command = [sys.executable, "-m", "project.serve"]
        else:
            command = [sys.executable, "-m", "gunicorn", "project.wsgi:application", "--workers", str(workers)]
            command += ["--bind", f"127.0.0.1:{port}", "--log-level", "warning"]
            if gunicorn_config:
                command += ["--config", "python:project.gunicorn"]
        # Its own process group, so that its workers can be killed with it if it will not stop.
        processes.append(
            subprocess.Popen(command, cwd=settings.BASE_DIR, env=env, stdout=log, stderr=log, start_new_session=True)
        )
        base_url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 90  # the machine may be loaded: be generous
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{base_url}/healthz", timeout=1) as response:
                    if response.status == 200:
                        return base_url
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"gunicorn did not start: {(tmp_path / f'gunicorn-{port}.log').read_text()}")

    yield start
    for process in processes:
        process.terminate()
    for process in processes:
        # The production server lets open keep-alive connections finish for up to its workers'
        # kill timeout (30 s) before it ends them: wait past that. A server still up then is
        # killed, workers and all: left running, it could write rows into the next test.
        try:
            process.wait(timeout=45)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _make_user(username: str, **extra: object):
    return get_user_model().objects.create_user(username=username, password=PASSWORD, **extra)


@pytest.fixture
def alice(db):
    return _make_user("alice")


@pytest.fixture
def bob(db):
    return _make_user("bob")


@pytest.fixture
def staff(db):
    return _make_user("staff", is_staff=True)


def bearer(user) -> str:
    return f"Bearer {RevocableRefreshToken.for_user(user).access_token}"


@pytest.fixture
def client_for() -> Callable[..., APIClient]:
    """An API client authenticated as `user` with a JWT access token (anonymous for None)."""

    def make(user=None) -> APIClient:
        client = APIClient()
        if user is not None:
            client.credentials(HTTP_AUTHORIZATION=bearer(user))
        return client

    return make


@pytest.fixture
def anon() -> APIClient:
    return APIClient()


@pytest.fixture(scope="session")
def _fake_openai_server():
    from tests.support.fake_openai import FakeOpenAI

    server = FakeOpenAI().start()
    yield server
    server.shutdown()


@pytest.fixture
def fake_openai(_fake_openai_server, settings):
    """A local server speaking OpenAI's protocol, configured as this service's upstream."""
    server = _fake_openai_server
    server.reset()
    settings.OPENAI_BASE_URL = server.base_url
    settings.OPENAI_API_KEY = "sk-test-upstream-key"
    settings.OPENAI_MODEL = "fake-gpt"
    settings.SENTIMENT_OPENAI_MODEL = "fake-gpt"
    settings.OPENAI_TIMEOUT_SECONDS = 5.0
    settings.OPENAI_MAX_RETRIES = 0
    yield server
    server.release.set()  # a test that failed while its calls were held: let them go now
