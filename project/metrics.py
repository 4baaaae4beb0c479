"""Prometheus metrics: what every worker counts, and GET /metrics, which adds them up.

The servers run several worker processes, and a scrape reaches one of them. So with
PROMETHEUS_MULTIPROC_DIR set (the production server and gunicorn set it before any worker starts,
project/serve.py, project/gunicorn.py), prometheus-client keeps each worker's values in files
there and /metrics merges them: counters keep a dead worker's counts, gauges count live workers
only. Without it (`make run`, a single process) the values live in the process.

The metrics are defined here, once; the apps import this module to count what only they see
(predictions, tokens, refusals). Route labels are Django's view names (`v1:prediction-list`), never
paths: a path carries ids, and a scanner's 404s would make a series each.
"""

from __future__ import annotations

import contextlib
import glob
import hmac
import os
import re

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from project.error_handlers import json_error

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"  # project/metrics_directory.py sets it

# Seconds; a prediction is a few ms, a generation tens of seconds.
LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

REQUESTS = Counter(
    "mlserve_http_requests_total", "Requests answered, by route name, method and status.", ["route", "method", "status"]
)
LATENCY = Histogram(
    "mlserve_http_request_duration_seconds",
    "Time from the request's arrival to its answer's end (a stream's last byte), by route name and method.",
    ["route", "method"],
    buckets=LATENCY_BUCKETS,
)
PREDICTIONS = Counter("mlserve_predictions_total", "Predictions stored, by model and version.", ["model", "version"])
PREDICTION_ROWS = Counter(
    "mlserve_prediction_rows_total", "Rows predicted and stored, by model and version.", ["model", "version"]
)
GENERATION_TOKENS = Counter(
    "mlserve_generation_tokens_total", "Tokens of generations, by upstream model and kind.", ["model", "kind"]
)
UPSTREAM_ERRORS = Counter(
    "mlserve_upstream_errors_total",
    "Requests that failed on the generation upstream (a stream failing midway included), by error code.",
    ["kind"],
)
REFUSALS = Counter(
    "mlserve_limit_refusals_total",
    "Requests refused by a limit (429), by limit group: a rate-limit group, login_guard, or a budget.",
    ["limit"],
)
REQUEST_LOG_FAILURES = Counter(
    "mlserve_request_log_write_failures_total", "Request-log rows that could not be written."
)
POOL_CONNECTIONS = Gauge(
    "mlserve_db_pool_connections",
    "This worker's database pool: connections in use, idle, and requests waiting for one (summed over workers).",
    ["state"],
    multiprocess_mode="livesum",
)
SHADOW_RUNS = Counter(
    "mlserve_shadow_runs_total",
    "Shadow runs of a roll-out, by model and outcome: stored, failed (the shadow could not answer), "
    "or dropped (the worker's queue was full).",
    ["model", "outcome"],
)
MODEL_LOAD = Histogram(
    "mlserve_model_load_seconds",
    "Loading a model file (checksum and joblib), by model and version.",
    ["model", "version"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)


def route_of(request: HttpRequest) -> str:
    match = request.resolver_match
    return match.view_name if match is not None and match.view_name else "unmatched"


def observe_request(*, route: str, method: str, status: int, seconds: float) -> None:
    method = method if method in _METHODS else "other"  # a client's method must not make series
    REQUESTS.labels(route, method, str(status)).inc()
    LATENCY.labels(route, method).observe(seconds)


_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


# A generation's model is named by the upstream, and many OpenAI-compatible servers echo whatever
# name the client asked for: the first names a worker sees get series of their own, the rest
# share one ("other"), so no client can make series without end.
MAX_GENERATION_MODELS = 32
_generation_models: set[str] = set()


def _generation_model_label(model: str) -> str:
    model = model or "unknown"
    if model in _generation_models:
        return model
    if len(_generation_models) < MAX_GENERATION_MODELS:
        _generation_models.add(model)
        return model
    return "other"


def observe_usage(*, model: str, prompt_tokens: int, completion_tokens: int, error_code: str) -> None:
    """What one finished request used of the generation upstream, or how it failed there."""
    if prompt_tokens or completion_tokens:
        label = _generation_model_label(model)
        if prompt_tokens:
            GENERATION_TOKENS.labels(label, "prompt").inc(prompt_tokens)
        if completion_tokens:
            GENERATION_TOKENS.labels(label, "completion").inc(completion_tokens)
    if error_code.startswith("upstream_"):
        UPSTREAM_ERRORS.labels(error_code).inc()


def count_prediction(*, model: str, version: int, rows: int) -> None:
    labels = (model, str(version))
    PREDICTIONS.labels(*labels).inc()
    PREDICTION_ROWS.labels(*labels).inc(rows)


def count_refusal(limit: str) -> None:
    REFUSALS.labels(limit).inc()


def observe_pool(stats: dict[str, int]) -> None:
    """This worker's pool figures, as psycopg-pool's get_stats() gives them."""
    size, available = stats.get("pool_size", 0), stats.get("pool_available", 0)
    POOL_CONNECTIONS.labels("in_use").set(max(size - available, 0))
    POOL_CONNECTIONS.labels("idle").set(available)
    POOL_CONNECTIONS.labels("waiting").set(stats.get("requests_waiting", 0))


# --- workers that are gone --------------------------------------------------------------------------

_PID_IN_NAME = re.compile(r"_(\d+)\.db$")


def forget_dead_workers() -> None:
    """Drop the live gauges of workers that are gone (a worker replaced without its server
    telling anyone, as granian does). Counters of dead workers are kept: their counts happened."""
    directory = os.environ.get(MULTIPROC_ENV)
    if not directory:
        return
    for name in glob.glob(os.path.join(directory, "gauge_live*_*.db")):
        found = _PID_IN_NAME.search(name)
        if found and not _alive(int(found.group(1))):
            # Two scrapes answered by two workers at once may both find it: one removes it.
            with contextlib.suppress(FileNotFoundError):
                multiprocess.mark_process_dead(int(found.group(1)), directory)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# --- GET /metrics ------------------------------------------------------------------------------------


@csrf_exempt  # any method gets an answer in the error shape, never Django's CSRF page
def metrics_view(request: HttpRequest) -> HttpResponse:
    """Prometheus text format. 404 unless METRICS_TOKEN is set; then `Authorization: Bearer
    <METRICS_TOKEN>` is required (compared in constant time). GET or HEAD only."""
    token = settings.METRICS_TOKEN
    if not token:
        return json_error(request, 404, "not_found", "Not found.")
    if request.method not in ("GET", "HEAD"):
        response = json_error(request, 405, "method_not_allowed", f'Method "{request.method}" not allowed.')
        response["Allow"] = "GET, HEAD"
        return response
    presented = request.headers.get("Authorization", "")
    if not hmac.compare_digest(presented.encode(), f"Bearer {token}".encode()):
        response = json_error(
            request, 401, "not_authenticated", "GET /metrics needs Authorization: Bearer <METRICS_TOKEN>."
        )
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    if os.environ.get(MULTIPROC_ENV):
        forget_dead_workers()
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        from prometheus_client import REGISTRY as registry
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
