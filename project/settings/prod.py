"""Production: refuses to start without its secrets and a real database and cache."""

from django.core.exceptions import ImproperlyConfigured

from .base import *  # noqa: F403
from .base import DATABASES, REDIS_URL, SECRET_KEY, env

DEBUG = False

if not SECRET_KEY or len(SECRET_KEY) < 32:
    raise ImproperlyConfigured("DJANGO_SECRET_KEY must be set to a random string of at least 32 characters")
if DATABASES["default"]["ENGINE"] not in ("django.db.backends.postgresql", "project.postgresql"):
    raise ImproperlyConfigured("DATABASE_URL must point at PostgreSQL in production")
if not REDIS_URL:
    raise ImproperlyConfigured("REDIS_URL must be set in production: rate limits need a shared cache")

SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if env.bool("BEHIND_TLS_PROXY", default=False) else None
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=True)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=True)
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

# HTTPS only. A plain-HTTP request is redirected to https, except the routes a load balancer or a
# scraper asks over plain HTTP from inside the network (a redirect would fail their check).
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
# Strict-Transport-Security on every HTTPS answer: browsers use https only, for a year. Subdomains
# are those of the API's own host (api.example.com covers *.api.example.com, not example.com).
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=365 * 24 * 3600)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=True)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=False)
# W021 says preload is off. That is meant: the preload list is built into browsers for the whole
# registrable domain (example.com and every subdomain, not just this API's host) and takes months
# to leave, so joining it is the domain owner's decision (SECURE_HSTS_PRELOAD=true), never a default.
SILENCED_SYSTEM_CHECKS = ["security.W021"]
