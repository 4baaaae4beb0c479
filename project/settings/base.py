"""Settings shared by every environment.

Everything that differs between machines comes from the environment, parsed here with
django-environ; `.env.example` lists the variables. The environment-specific modules
(dev, test, prod) only change defaults and refuse to start without what they need.
"""

import os
from datetime import timedelta
from pathlib import Path

import environ

from project.dotenv import read_dotenv
from project.logs import logging_config
from project.prices import price_table

BASE_DIR = Path(__file__).resolve().parent.parent.parent

env = environ.Env()
# A local .env is a convenience for development; the real environment always wins.
read_dotenv()

# Taken as it is: django-environ would read a key starting with "$" (one in 50 of Django's own
# generated keys) as the name of another variable to take the value of.
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "")
DEBUG = env.bool("DJANGO_DEBUG", default=False)
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["127.0.0.1", "localhost"])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_ratelimit",
    "accounts",
    "inference",
    "analytics",
]

MIDDLEWARE = [
    # First, so that it times, logs and counts everything below it, failures included.
    "project.request_telemetry.RequestTelemetryMiddleware",
    "analytics.middleware.RequestLogMiddleware",
    "accounts.middleware.RateLimitHeadersMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "project.urls"
WSGI_APPLICATION = "project.wsgi.application"
ASGI_APPLICATION = "project.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database -----------------------------------------------------------------------
# No ATOMIC_REQUESTS: services open their own transactions, so a request's log row is
# written even when the request fails.
DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'var' / 'dev.sqlite3'}")}
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"


def postgresql_pool(database: dict) -> dict:
    """PostgreSQL through a bounded pool per worker process (Django 5.2's psycopg pool).

    A thread holds a connection only while it runs a request (CONN_MAX_AGE 0 gives it back at
    the end), and at most DATABASE_POOL_MAX_SIZE are open per worker, checked before each use.
    Mind PostgreSQL's max_connections: workers x DATABASE_POOL_MAX_SIZE + the other processes
    (aggregator, housekeeping, psql) must stay under it; the defaults (1 per core, 8 each) leave
    most of the default 100 free. Statements are bound on the server and, once one has run
    DATABASE_PREPARE_THRESHOLD times on a connection, prepared there.
    """
    database["ENGINE"] = "project.postgresql"  # Django's, with a cheaper check (project/postgresql/base.py)
    database["CONN_MAX_AGE"] = 0
    database.setdefault("OPTIONS", {}).update(
        {
            "pool": {
                "min_size": env.int("DATABASE_POOL_MIN_SIZE", default=1),
                "max_size": env.int("DATABASE_POOL_MAX_SIZE", default=8),
                # How long a request waits for a free connection before it is a 503.
                "timeout": env.float("DATABASE_POOL_TIMEOUT", default=10.0),
                "max_idle": 300,
                "max_lifetime": 3600,
            },
            "server_side_binding": True,
            "prepare_threshold": env.int("DATABASE_PREPARE_THRESHOLD", default=2),
            # How these connections show in pg_stat_activity.
            "application_name": env.str("DATABASE_APPLICATION_NAME", default="mlserve"),
        }
    )
    return database


if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql" and env.bool("DATABASE_POOL", default=True):
    postgresql_pool(DATABASES["default"])
else:
    DATABASES["default"]["CONN_MAX_AGE"] = env.int("DATABASE_CONN_MAX_AGE", default=60)
# A pooled connection idle this long is checked (a round trip) before it is used again.
POOL_CHECK_IDLE_SECONDS = env.float("POOL_CHECK_IDLE_SECONDS", default=1.0)
# How long /readyz waits for a database connection before it says not ready.
READINESS_TIMEOUT_SECONDS = env.float("READINESS_TIMEOUT_SECONDS", default=2.0)

# --- Cache ----------------------------------------------------------------------------
REDIS_URL = env.str("REDIS_URL", default="")
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": env.str("CACHE_KEY_PREFIX", default="mlserve"),
            "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 1, "SOCKET_TIMEOUT": 1},
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# --- Auth -----------------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT: Path | None = BASE_DIR / "var" / "static"  # None in dev and test: served from the apps
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}

# --- Limits ---------------------------------------------------------------------------
# The largest request body accepted, for JSON (our parser) and forms (Django) alike.
MAX_REQUEST_BODY_BYTES = env.int("MAX_REQUEST_BODY_BYTES", default=5 * 1024 * 1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = MAX_REQUEST_BODY_BYTES
# The largest batch of `instances` one prediction may carry.
MAX_BATCH_ROWS = env.int("MAX_BATCH_ROWS", default=10_000)

# --- Models ---------------------------------------------------------------------------
# Where registered joblib files are kept. Only operators write here: joblib runs code on
# load, so a client can never upload a model.
MODEL_DIR = Path(env.str("MODEL_DIR", default=str(BASE_DIR / "var" / "models")))
DEFAULT_MODEL = env.str("DEFAULT_MODEL", default="iris")
# Keep each prediction's input rows, for browsing in the admin.
STORE_PREDICTION_INPUTS = env.bool("STORE_PREDICTION_INPUTS", default=True)
# Rows of answered requests a worker keeps waiting for a roll-out's shadow version (0: no shadow
# runs); past it, copies are dropped (and counted) rather than slowing the answers (inference/shadow.py).
SHADOW_QUEUE_ROWS = env.int("SHADOW_QUEUE_ROWS", default=100_000)
# How long the shadow thread gathers copies before it runs them, as one batch.
SHADOW_BATCH_SECONDS = env.float("SHADOW_BATCH_SECONDS", default=0.1)

# --- Idempotency-Key (inference/idempotency.py) -----------------------------------------
# How long a key and its answer are kept: a retry within this gets the first answer again.
IDEMPOTENCY_KEY_HOURS = env.int("IDEMPOTENCY_KEY_HOURS", default=24)
# How long a request holding a key may run before it counts as cut off (its worker killed) and a
# retry may run it again: predictions, and the routes that wait on an upstream (streams included).
IDEMPOTENCY_LEASE_SECONDS = env.int("IDEMPOTENCY_LEASE_SECONDS", default=30)
IDEMPOTENCY_UPSTREAM_LEASE_SECONDS = env.int("IDEMPOTENCY_UPSTREAM_LEASE_SECONDS", default=600)

# --- In-process copies of rows (project/freshness.py) -----------------------------------
# Workers keep API keys, users and model versions in memory; a stamp in Redis tells them when a
# row changed, so revoking a key or activating a model holds on the next request. A change no
# stamp hears of (a bulk UPDATE in a shell, or one made while Redis was down) holds within this
# many seconds: no copy is older.
FRESHNESS_MAX_AGE_SECONDS = env.float("FRESHNESS_MAX_AGE_SECONDS", default=5.0)
FRESHNESS_MAX_ENTRIES = env.int("FRESHNESS_MAX_ENTRIES", default=10_000)

# --- Sentiment and generation ---------------------------------------------------------
# The upstream: OpenAI, or any OpenAI-compatible server (vLLM, Ollama, ...) via OPENAI_BASE_URL.
# Generation is available when either is set; without both it answers 503.
OPENAI_API_KEY = env.str("OPENAI_API_KEY", default="")
OPENAI_BASE_URL = env.str("OPENAI_BASE_URL", default="")
OPENAI_MODEL = env.str("OPENAI_MODEL", default="gpt-4o-mini")
OPENAI_TIMEOUT_SECONDS = env.float("OPENAI_TIMEOUT_SECONDS", default=30.0)
OPENAI_MAX_RETRIES = env.int("OPENAI_MAX_RETRIES", default=1)
# local (VADER, offline), openai, or hybrid (openai, falling back to local when it fails).
SENTIMENT_BACKEND = env.str("SENTIMENT_BACKEND", default="local")
SENTIMENT_OPENAI_MODEL = env.str("SENTIMENT_OPENAI_MODEL", default=OPENAI_MODEL)
SENTIMENT_MAX_CHARS = env.int("SENTIMENT_MAX_CHARS", default=5000)
SENTIMENT_MAX_TEXTS = env.int("SENTIMENT_MAX_TEXTS", default=100)
# The sentiment model's limits (gpt-4o-mini's by default): a batch goes upstream in one request
# when its bound fits them, else in as few as do.
SENTIMENT_OPENAI_CONTEXT_TOKENS = env.int("SENTIMENT_OPENAI_CONTEXT_TOKENS", default=128_000)
SENTIMENT_OPENAI_MAX_OUTPUT_TOKENS = env.int("SENTIMENT_OPENAI_MAX_OUTPUT_TOKENS", default=16_384)
# The most words (after each emoji is read as its description) VADER reads of one text; the rest
# is not scored. Bounds a text's CPU whatever it holds (README: "What a sentiment call costs").
SENTIMENT_MAX_WORDS = env.int("SENTIMENT_MAX_WORDS", default=1000)
GENERATION_DEFAULT_MAX_TOKENS = env.int("GENERATION_DEFAULT_MAX_TOKENS", default=256)
GENERATION_MAX_TOKENS_LIMIT = env.int("GENERATION_MAX_TOKENS_LIMIT", default=4096)
GENERATION_MAX_PROMPT_CHARS = env.int("GENERATION_MAX_PROMPT_CHARS", default=32_000)
# Identical sentiment requests, and generations at temperature 0, are answered from the
# cache for this long without asking the upstream (0 turns caching off).
RESPONSE_CACHE_SECONDS = env.int("RESPONSE_CACHE_SECONDS", default=3600)
# POST /v1/embeddings: the model when a request names none, and the most inputs and characters.
OPENAI_EMBEDDING_MODEL = env.str("OPENAI_EMBEDDING_MODEL", default="text-embedding-3-small")
EMBEDDINGS_MAX_INPUTS = env.int("EMBEDDINGS_MAX_INPUTS", default=2048)
EMBEDDINGS_MAX_CHARS = env.int("EMBEDDINGS_MAX_CHARS", default=200_000)
# GET /v1/models asks the upstream at most once this often (0: every request).
MODELS_CACHE_SECONDS = env.int("MODELS_CACHE_SECONDS", default=60)
# Where tiktoken keeps its vocabularies (seeded from a package: nothing is downloaded); default:
# a directory under the system's temporary directory.
TIKTOKEN_CACHE_DIR = env.str("TIKTOKEN_CACHE_DIR", default="")
# Keep prompts, texts and generated output in the database (off keeps payloads out of it).
STORE_TEXTS = env.bool("STORE_TEXTS", default=True)

# --- Analytics ------------------------------------------------------------------------
# Estimated cost of upstream tokens: per 1M prompt and completion tokens, over the table in
# project/prices.py (JSON, e.g. '{"my-model": {"prompt": 0.1, "completion": 0.2}}'; null removes one).
LLM_PRICES = price_table(env.str("LLM_PRICES", default=""))
LLM_PRICE_CURRENCY = env.str("LLM_PRICE_CURRENCY", default="USD")
ANALYTICS_MAX_DAYS = env.int("ANALYTICS_MAX_DAYS", default=400)  # the longest period one query may cover
ANALYTICS_MAX_HOURLY_DAYS = env.int("ANALYTICS_MAX_HOURLY_DAYS", default=14)  # longest period in hourly buckets

# Client address: REMOTE_ADDR, unless the connection comes from one of these proxies
# (addresses or networks, e.g. "10.0.0.0/8"); then the nearest X-Forwarded-For entry that is
# not itself a trusted proxy.
TRUSTED_PROXIES = env.list("TRUSTED_PROXIES", default=[])

# --- REST framework -------------------------------------------------------------------
REST_FRAMEWORK = {
    # The API key class first: a Bearer value that is a key must not reach the JWT class.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "accounts.authentication.ApiKeyAuthentication",
        "rest_framework_simplejwt.authentication.JWTAuthentication",
    ],
    "DEFAULT_THROTTLE_CLASSES": ["accounts.throttles.UserRateThrottle"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PARSER_CLASSES": ["project.json.JSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["project.json.JSONRenderer"],
    "EXCEPTION_HANDLER": "project.error_handlers.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "UNAUTHENTICATED_USER": None,
    "DEFAULT_PAGINATION_CLASS": "project.pagination.NumberedPagination",
    "PAGE_SIZE": env.int("API_PAGE_SIZE", default=50),
}

# --- Rate limits ----------------------------------------------------------------------
# Rates are "count/period" with period s, m, h or d (optionally a multiple: "100/5m").
RATE_LIMITS = {
    "default": env.str("RATE_LIMIT_DEFAULT", default="600/m"),  # per API key or user
    "predictions": env.str("RATE_LIMIT_PREDICTIONS", default="600/m"),  # POST /predictions/, per key or user
    "generation": env.str("RATE_LIMIT_GENERATION", default="60/m"),  # the costly upstream routes
    "login-ip": env.str("RATE_LIMIT_LOGIN_IP", default="30/m"),  # token routes, per client address
}
# Failed logins (accounts/login_guard.py), in fixed windows: per username from one address; per
# address over all usernames; per username from all addresses, far above what one address can
# reach (past it, only addresses that have not failed for that username may try it).
LOGIN_FAILURE_LIMITS = {
    "username_address": env.str("LOGIN_FAILURES_PER_USERNAME_AND_ADDRESS", default="5/15m"),
    "address": env.str("LOGIN_FAILURES_PER_ADDRESS", default="20/h"),
    "username": env.str("LOGIN_FAILURES_PER_USERNAME", default="100/h"),
}
# When the shared cache is down: True keeps serving without limits (and logs errors),
# False answers 503 until it is back.
RATE_LIMIT_FAIL_OPEN = env.bool("RATE_LIMIT_FAIL_OPEN", default=True)
RATELIMIT_ENABLE = env.bool("RATELIMIT_ENABLE", default=True)
RATELIMIT_FAIL_OPEN = RATE_LIMIT_FAIL_OPEN  # django-ratelimit's own switch, for a count it could not read
RATELIMIT_USE_CACHE = "default"

SIMPLE_JWT = {
    "ACCESS_TOKEN_LIFETIME": timedelta(minutes=env.int("JWT_ACCESS_MINUTES", default=15)),
    "REFRESH_TOKEN_LIFETIME": timedelta(days=env.int("JWT_REFRESH_DAYS", default=7)),
    "ROTATE_REFRESH_TOKENS": env.bool("JWT_ROTATE_REFRESH_TOKENS", default=True),
    "BLACKLIST_AFTER_ROTATION": True,
    "UPDATE_LAST_LOGIN": False,
    "AUTH_HEADER_TYPES": ("Bearer",),
    "TOKEN_OBTAIN_SERIALIZER": "accounts.serializers.TokenObtainPairSerializer",
    "TOKEN_REFRESH_SERIALIZER": "accounts.serializers.TokenRefreshSerializer",
    "TOKEN_BLACKLIST_SERIALIZER": "accounts.serializers.TokenBlacklistSerializer",
}

SPECTACULAR_SETTINGS = {
    "TITLE": "mlserve API",
    "DESCRIPTION": "Machine-learning models behind JWT auth, with every request and prediction recorded.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    # Swagger UI would otherwise send the schema's URL to validator.swagger.io on every visit.
    "SWAGGER_UI_SETTINGS": {"deepLinking": True, "validatorUrl": None},
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "SCHEMA_PATH_PREFIX": r"/api/v1",
}

# One line per request and the request id on every line (project/logs.py, project/request_telemetry.py).
LOG_LEVEL = env.str("LOG_LEVEL", default="INFO")
LOG_FORMAT = env.str("LOG_FORMAT", default="json")  # json | console; dev.py makes console the default
LOG_REQUESTS = env.bool("LOG_REQUESTS", default=True)
LOGGING = logging_config(log_format=LOG_FORMAT, level=LOG_LEVEL)

# GET /metrics answers only with `Authorization: Bearer <METRICS_TOKEN>`; unset, it is a 404.
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")

# Errors to Sentry, when a DSN is given (project/sentry.py scrubs credentials and bodies first).
SENTRY_DSN = env.str("SENTRY_DSN", default="")
SENTRY_ENVIRONMENT = env.str("SENTRY_ENVIRONMENT", default="production")
if SENTRY_DSN:
    from project.sentry import sentry_init

    sentry_init(dsn=SENTRY_DSN, environment=SENTRY_ENVIRONMENT)
