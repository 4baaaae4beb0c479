"""gunicorn settings for production: `gunicorn -c python:project.gunicorn project.wsgi`.

Threaded workers (gthread): a generation waits tens of seconds on its upstream and a stream
holds its connection open the whole time, but a waiting thread costs no CPU, so with enough
threads per worker dozens of slow generations leave the other threads free for predictions.
Those threads give their database connection back while they wait (project.db).
"""

import os

bind = os.environ.get("GUNICORN_BIND", "0.0.0.0:8000")
workers = int(os.environ.get("WEB_CONCURRENCY", os.cpu_count() or 2))
worker_class = os.environ.get("GUNICORN_WORKER_CLASS", "gthread")
threads = int(os.environ.get("GUNICORN_THREADS", "64"))
# Seconds a worker may go silent before it is restarted; the threads of a gthread worker do
# not block its heartbeat, so long streams are not cut by this.
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "60"))
graceful_timeout = 30
keepalive = 5
# Restart workers now and then, so a slow leak in a dependency cannot grow without bound.
max_requests = int(os.environ.get("GUNICORN_MAX_REQUESTS", "20000"))
max_requests_jitter = 2000
accesslog = os.environ.get("GUNICORN_ACCESS_LOG") or None
