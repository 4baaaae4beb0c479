"""Development: starts with no configuration at all (SQLite, local-memory cache)."""

from .base import *  # noqa: F403
from .base import BASE_DIR, LOG_LEVEL, REDIS_URL, SECRET_KEY, env, logging_config

DEBUG = env.bool("DJANGO_DEBUG", default=True)
# A throwaway key so `make run` needs nothing; production refuses to start without one.
SECRET_KEY = SECRET_KEY or "dev-only-insecure-key-not-for-production"

# The embedded SQLite file and the model store live here; make sure it exists.
(BASE_DIR / "var").mkdir(exist_ok=True)

# Static files straight from the apps (no collectstatic step); production collects them.
STATIC_ROOT = None
WHITENOISE_USE_FINDERS = True

if not REDIS_URL:
    # `make run` is one process, so a local-memory cache counts its rate limits correctly.
    # django-ratelimit refuses a non-shared cache (E003); that refusal is right for every
    # multi-process deployment, so it is silenced here only, never in test or prod settings.
    SILENCED_SYSTEM_CHECKS = ["django_ratelimit.E003", "django_ratelimit.W001"]

# Plain lines in a terminal, unless asked otherwise.
LOG_FORMAT = env.str("LOG_FORMAT", default="console")
LOGGING = logging_config(log_format=LOG_FORMAT, level=LOG_LEVEL)
