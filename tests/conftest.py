"""Fixtures shared by every test: alice, bob and staff, clients that speak for them, and the
demo models registered once per session in the real PostgreSQL test database."""

from __future__ import annotations

from collections.abc import Callable

import psycopg
import pytest
import redis
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.cache import cache
from rest_framework.test import APIClient

from accounts.tokens import RevocableRefreshToken
from inference import runtime

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
    """Models loaded in this process and cache entries never leak from one test into another."""
    runtime.forget_loaded_models()
    cache.clear()


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
