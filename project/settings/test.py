"""Tests: the real PostgreSQL and Redis, as in production."""

from .base import *  # noqa: F403
from .base import LOG_LEVEL, env, logging_config, postgresql_pool

SECRET_KEY = "test-only-key-long-enough-for-hmac-sha256-signing"  # noqa: S105
DEBUG = False

# The pool, server-side binding and prepared statements, as in production.
DATABASES = {"default": postgresql_pool(env.db("DATABASE_URL", default="postgres://postgres@127.0.0.1:5432/mlserve"))}
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True

REDIS_URL = env.str("REDIS_URL", default="redis://127.0.0.1:6379/15")
CACHES = {
    "default": {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": "mlserve-test",
        "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 1, "SOCKET_TIMEOUT": 1},
    }
}

# Fast hashing: the tests create many users and nothing here is a real secret.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}

# Static files straight from the apps (no collectstatic step); production collects them.
STATIC_ROOT = None
WHITENOISE_USE_FINDERS = True

LOG_FORMAT = env.str("LOG_FORMAT", default="console")
LOGGING = logging_config(log_format=LOG_FORMAT, level=LOG_LEVEL)
