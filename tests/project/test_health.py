"""GET /healthz (liveness) and GET /readyz (database, cache and models usable), no credentials."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from django.conf import settings as django_settings

from inference.models import ModelVersion

pytestmark = pytest.mark.django_db

UNREACHABLE_CACHE = {
    "default": {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": "redis://127.0.0.1:1/0",  # nothing listens on port 1
        "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 0.5, "SOCKET_TIMEOUT": 0.5},
    }
}


def assert_not_ready(response, *failed: str) -> dict:
    """A 503 in the error shape whose details name exactly the checks in `failed`."""
    assert response.status_code == 503, response.content
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}
    error = body["error"]
    assert set(error) == {"code", "message", "details"}
    assert error["code"]
    assert set(error["details"]) == set(failed)
    for name in failed:
        assert name in error["message"]
        assert error["details"][name]
    return error


@pytest.fixture
def model_copy(settings, tmp_path) -> Path:
    """A copy of the model store that the test may break, made the service's MODEL_DIR."""
    copy = tmp_path / "models"
    shutil.copytree(django_settings.MODEL_DIR, copy)
    settings.MODEL_DIR = copy
    return copy


def active_file(name: str, store: Path) -> Path:
    return store / ModelVersion.objects.get(name=name, is_active=True).file


def test_healthz_answers_200_without_credentials(anon):
    response = anon.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_healthz_stays_up_when_the_cache_is_down(anon, settings):
    settings.CACHES = UNREACHABLE_CACHE
    assert anon.get("/healthz").status_code == 200


def test_readyz_answers_200_when_everything_is_usable(anon):
    response = anon.get("/readyz")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["status"] == "ready"
    assert body["checks"] == {"database": "ok", "cache": "ok", "models": "ok"}


def test_readyz_names_models_when_the_model_store_is_empty(anon, settings, tmp_path):
    settings.MODEL_DIR = tmp_path
    assert_not_ready(anon.get("/readyz"), "models")


def test_readyz_names_models_when_the_default_models_file_is_missing(anon, model_copy):
    active_file(django_settings.DEFAULT_MODEL, model_copy).unlink()
    error = assert_not_ready(anon.get("/readyz"), "models")
    assert django_settings.DEFAULT_MODEL in str(error["details"]["models"])


def test_readyz_names_models_when_another_active_models_file_is_missing(anon, model_copy, settings):
    settings.DEFAULT_MODEL = "iris"
    active_file("diabetes", model_copy).unlink()
    error = assert_not_ready(anon.get("/readyz"), "models")
    assert "diabetes" in str(error["details"]["models"])


def test_readyz_names_models_when_the_default_models_file_fails_its_checksum(anon, model_copy):
    path = active_file(django_settings.DEFAULT_MODEL, model_copy)
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF  # one flipped byte: same size, different SHA-256
    path.write_bytes(bytes(data))
    error = assert_not_ready(anon.get("/readyz"), "models")
    assert "checksum" in str(error["details"]["models"]).lower()


def test_readyz_names_models_when_the_default_model_is_not_registered(anon, settings):
    settings.DEFAULT_MODEL = "no-such-model"
    error = assert_not_ready(anon.get("/readyz"), "models")
    assert "no-such-model" in str(error["details"]["models"])


def test_readyz_names_models_when_no_model_is_registered(anon):
    ModelVersion.objects.update(is_active=False)
    assert_not_ready(anon.get("/readyz"), "models")


def test_readyz_names_the_cache_when_it_is_unreachable(anon, settings):
    settings.CACHES = UNREACHABLE_CACHE
    error = assert_not_ready(anon.get("/readyz"), "cache")
    assert "127.0.0.1:1" not in error["message"]  # no infrastructure details to an anonymous caller


def test_readyz_names_every_failed_check(anon, settings, tmp_path):
    settings.CACHES = UNREACHABLE_CACHE
    settings.MODEL_DIR = tmp_path
    assert_not_ready(anon.get("/readyz"), "cache", "models")


def test_readyz_recovers_once_the_problem_is_fixed(anon, model_copy):
    path = active_file(django_settings.DEFAULT_MODEL, model_copy)
    moved = path.with_suffix(".away")
    path.rename(moved)
    assert_not_ready(anon.get("/readyz"), "models")
    moved.rename(path)
    assert anon.get("/readyz").status_code == 200


def test_neither_probe_writes_a_request_log_row(anon):
    from analytics.models import RequestLog

    anon.get("/healthz")
    anon.get("/readyz")
    assert not RequestLog.objects.exists()
