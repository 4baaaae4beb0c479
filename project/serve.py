"""The production server: `python -m project.serve` runs the WSGI app under granian.

Measured against gunicorn's threaded workers on the same app (README, `make bench`), granian
answered more predictions a second at a lower p50, and its HTTP side is Rust, so a slow client
holds no Python thread while it trickles its request in. Each worker runs the app on a pool of
threads (GRANIAN_BLOCKING_THREADS, 64): a generation waiting on its upstream holds a thread but
no CPU and no database connection, so dozens of them leave the other threads to predictions.

Workers run with MALLOC_ARENA_MAX=2 (set here, before any process starts, by starting again
with it): glibc otherwise gives many threads their own malloc arenas, which a threaded worker
fills and fragments (about 10 MB a worker under batch load, measured). gunicorn stays supported
(`gunicorn -c python:project.gunicorn project.wsgi`).
"""

from __future__ import annotations

import os
import sys

from granian import Granian
from granian.constants import Interfaces
from granian.server import MPServer, MTServer

from project import metrics_directory
from project.dotenv import read_dotenv


def server() -> MPServer | MTServer:  # Granian is one or the other, as granian was built
    host, _, port = os.environ.get("BIND", "0.0.0.0:8000").rpartition(":")
    return Granian(
        "project.wsgi:application",
        address=host or "0.0.0.0",  # noqa: S104
        port=int(port),
        interface=Interfaces.WSGI,
        workers=int(os.environ.get("WEB_CONCURRENCY", os.cpu_count() or 2)),
        blocking_threads=int(os.environ.get("GRANIAN_BLOCKING_THREADS", "64")),
        backlog=int(os.environ.get("GRANIAN_BACKLOG", "2048")),
        websockets=False,
        respawn_failed_workers=True,
        # Restart workers now and then, so a slow leak in a dependency cannot grow without bound.
        workers_lifetime=int(os.environ.get("GRANIAN_WORKERS_LIFETIME", "86400")),
        workers_kill_timeout=int(os.environ.get("GRANIAN_WORKERS_KILL_TIMEOUT", "30")),
        log_access=os.environ.get("GRANIAN_ACCESS_LOG", "") == "1",
    )


def main() -> None:
    if os.environ.get("MALLOC_ARENA_MAX") is None:  # read by glibc at process start: start again with it
        environment = {**os.environ, "MALLOC_ARENA_MAX": "2"}
        os.execve(sys.executable, [sys.executable, "-m", "project.serve"], environment)  # noqa: S606
    read_dotenv()  # this server's own variables may be there too
    directory = metrics_directory.share_between_workers()  # before any worker starts
    try:
        server().serve()
    finally:
        metrics_directory.remove(directory)


if __name__ == "__main__":
    main()
