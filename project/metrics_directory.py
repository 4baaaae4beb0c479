"""The directory where every worker keeps its metrics (prometheus-client's multiprocess mode).

Used by the servers' master processes before any worker starts, so it imports nothing of Django
or of prometheus-client: that library decides on import whether it shares values, by whether
PROMETHEUS_MULTIPROC_DIR is set, and a worker must import it only after it is.
"""

from __future__ import annotations

import glob
import os
import shutil
import tempfile

SERVER_ENV = "METRICS_DIR"  # the operator's choice, optional
ENV = "PROMETHEUS_MULTIPROC_DIR"  # what prometheus-client reads: set here only, for the workers
_OWN_PREFIX = "mlserve-metrics-"


def share_between_workers() -> str:
    """The directory every worker of this server counts into: METRICS_DIR, else a new one of this
    server's own. Made if missing; an earlier server's files in it (*.db, nothing else) are
    deleted, so counts start from zero with the server. An operator's directory is never removed
    itself: it may be a mount point, or under a parent this user cannot write. Returns it."""
    directory = os.environ.get(SERVER_ENV) or tempfile.mkdtemp(prefix=_OWN_PREFIX)
    os.makedirs(directory, exist_ok=True)
    for path in glob.glob(os.path.join(directory, "*.db")):
        os.remove(path)
    os.environ[ENV] = directory
    return directory


def remove(directory: str) -> None:
    """At the server's exit, a directory it made for itself goes with it (an operator's stays)."""
    made_here = os.path.basename(directory).startswith(_OWN_PREFIX) and directory != os.environ.get(SERVER_ENV)
    if directory and made_here:
        shutil.rmtree(directory, ignore_errors=True)
