"""gunicorn settings: `gunicorn -c python:project.gunicorn project.wsgi`.

The production server is granian (`python -m project.serve`, measured faster on this app);
gunicorn stays supported for platforms built around it.

Threaded workers (gthread): a generation waits tens of seconds on its upstream and a stream
holds its connection open the whole time, but a waiting thread costs no CPU, so with enough
threads per worker dozens of slow generations leave the other threads free for predictions.
Those threads give their database connection back while they wait (project.db).
"""

import os

from project.dotenv import read_dotenv

read_dotenv()  # the variables below may be in .env too

bind = os.environ.get("GUNICORN_BIND", "0.0.0.0:8000")
workers = int(os.environ.get("WEB_CONCURRENCY", os.cpu_count() or 2))
worker_class = os.environ.get("GUNICORN_WORKER_CLASS", "gthread")
threads = int(os.environ.get("GUNICORN_THREADS", "64"))
# Seconds a worker may go silent before it is restarted; the threads of a gthread worker do
# not block its heartbeat, so long streams are not cut by this.
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "60"))
graceful_timeout = 30
# Seconds an idle keep-alive connection is kept: longer than nginx keeps its upstream connections
# idle (keepalive_timeout 15s in deploy/nginx.conf), so nginx never writes a request onto one
# gunicorn has just closed (a POST would be a 502: nginx does not retry it).
keepalive = int(os.environ.get("GUNICORN_KEEPALIVE", "20"))
# Restart workers now and then, so a slow leak in a dependency cannot grow without bound.
max_requests = int(os.environ.get("GUNICORN_MAX_REQUESTS", "20000"))
max_requests_jitter = 2000
accesslog = os.environ.get("GUNICORN_ACCESS_LOG") or None


def on_starting(server: object) -> None:
    """Metrics: every worker counts into files in one directory, which /metrics adds up
    (project/metrics.py); set and emptied here, in the master, before any worker starts."""
    from project import metrics_directory

    metrics_directory.share_between_workers()


def child_exit(server: object, worker: object) -> None:
    """A gone worker's live gauges (its pool) stop counting; its counters stay."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)  # type: ignore[attr-defined]


def on_exit(server: object) -> None:
    from project import metrics_directory

    metrics_directory.remove(os.environ.get(metrics_directory.ENV, ""))
