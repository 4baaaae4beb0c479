"""No password or token is ever stored or logged: not in any table, the cache, or a log record."""

from __future__ import annotations

import logging

import pytest
from django.db import connection
from django_redis import get_redis_connection
from rest_framework.test import APIClient

from accounts.services import api_key_create
from tests.conftest import PASSWORD
from tests.support.fake_openai import LEAKY_KEY

UPSTREAM_KEY = "sk-test-upstream-key"  # what the fake_openai fixture configures

WRONG_PASSWORD = "not-the-password-but-still-a-secret-7f3a"


@pytest.fixture
def session_secrets(anon, alice, caplog, fake_openai) -> list[str]:
    """Log in, refresh, use the tokens and log out, as a client would; use an API key both ways,
    and the upstream (once failing, with its own key in its error body); returns every secret."""
    caplog.set_level(logging.DEBUG)
    key = api_key_create(user=alice, name="secret test", created_by=None).key
    for headers in ({"HTTP_X_API_KEY": key}, {"HTTP_AUTHORIZATION": f"Bearer {key}"}):
        keyed = APIClient()
        keyed.credentials(**headers)
        assert keyed.post("/api/v1/generations/", {"prompt": "hello"}, format="json").status_code == 201
    fake_openai.mode = "500"
    keyed.credentials(HTTP_X_API_KEY=key)
    assert keyed.post("/api/v1/generations/", {"prompt": "hello"}, format="json").status_code == 502
    fake_openai.mode = "ok"

    failed = anon.post("/api/v1/auth/token/", {"username": "alice", "password": WRONG_PASSWORD}, format="json")
    assert failed.status_code == 401

    login = anon.post("/api/v1/auth/token/", {"username": "alice", "password": PASSWORD}, format="json")
    assert login.status_code == 200
    access, refresh = login.json()["access"], login.json()["refresh"]

    refreshed = anon.post("/api/v1/auth/token/refresh/", {"refresh": refresh}, format="json")
    assert refreshed.status_code == 200
    new_access = refreshed.json()["access"]
    new_refresh = refreshed.json().get("refresh", refresh)

    for token in (access, new_access):
        anon.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
        assert anon.get("/api/v1/models/").status_code == 200
        response = anon.post("/api/v1/predictions/", {"model": "iris", "features": [5.1, 3.5, 1.4, 0.2]}, format="json")
        assert response.status_code == 201
    anon.credentials()

    logout = anon.post("/api/v1/auth/logout/", {"refresh": new_refresh}, format="json")
    assert logout.status_code in {200, 205}
    # The revoked token, sent again, is refused: it must not be stored to be recognised.
    again = anon.post("/api/v1/auth/token/refresh/", {"refresh": new_refresh}, format="json")
    assert again.status_code == 401

    tokens = {access, refresh, new_access, new_refresh}
    signatures = {token.rsplit(".", 1)[-1] for token in tokens}
    return [PASSWORD, WRONG_PASSWORD, "Bearer", *tokens, *signatures, key, key.split("_")[-1], UPSTREAM_KEY, LEAKY_KEY]


def text_columns() -> list[tuple[str, str]]:
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT table_name, column_name FROM information_schema.columns
            WHERE table_schema = current_schema()
              AND data_type IN ('text', 'character varying', 'character', 'json', 'jsonb')
            ORDER BY table_name, column_name
            """
        )
        return cursor.fetchall()


def columns_containing(text: str) -> list[tuple[str, str]]:
    """Every (table, column) of text or JSON type in which `text` occurs."""
    found = []
    with connection.cursor() as cursor:
        for table, column in text_columns():
            quoted_table, quoted_column = connection.ops.quote_name(table), connection.ops.quote_name(column)
            cursor.execute(
                f"SELECT count(*) FROM {quoted_table} WHERE strpos({quoted_column}::text, %s) > 0",  # noqa: S608
                [text],
            )
            if cursor.fetchone()[0]:
                found.append((table, column))
    return found


def test_no_table_holds_a_password_or_a_token(session_secrets):
    tables = {table for table, _ in text_columns()}
    # The scan must reach the tables these calls write to, and find what is there, or it proves nothing.
    assert {"analytics_requestlog", "inference_prediction", "auth_user", "accounts_revokedtoken"} <= tables
    assert ("analytics_requestlog", "endpoint") in columns_containing("v1:token-refresh")
    found = {secret[:16]: columns_containing(secret) for secret in session_secrets}
    assert {secret: where for secret, where in found.items() if where} == {}


def test_the_cache_holds_no_password_or_token(session_secrets):
    redis = get_redis_connection("default")
    found = []
    for key in redis.scan_iter(count=1000):
        blobs = [key]
        if redis.type(key) == b"string":
            blobs.append(redis.get(key) or b"")
        for blob in blobs:
            for secret in session_secrets:
                if secret.encode() in blob:
                    found.append((key[:60], secret[:12]))
    assert found == []


def test_no_log_record_holds_a_password_or_a_token(session_secrets, caplog):
    # The calls ran in the fixture, so their records are those of the setup phase.
    records = caplog.get_records("setup")
    assert records, "nothing was logged: the check below would prove nothing"
    found = []
    for record in records:
        texts = [record.getMessage(), repr(record.args), record.exc_text or "", repr(record.__dict__)]
        if record.exc_info:
            texts.append(logging.Formatter().formatException(record.exc_info))
        for secret in session_secrets:
            if any(secret in text for text in texts):
                found.append((record.name, record.getMessage()[:80], secret[:12]))
    assert found == []
