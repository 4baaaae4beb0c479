"""Shadow runs: a roll-out's shadow version answers a copy of each default request, off the
request path, after the answer has been sent.

The prediction route hands its rows to this worker's bounded queue once its answer has gone
(the response's close) and is done; one thread per worker takes copies off the queue, runs the
shadow model, compares its outputs with the answer's (same class per row, for classifiers; the
absolute difference, for regressors) and writes a ShadowPrediction per copy, linked to the
prediction that was answered, a batch of copies per statement. When the queue is full a copy is
dropped and counted (mlserve_shadow_runs_total{outcome="dropped"}): a shadow must never slow the
answers, and a queue that only grows would, through memory and the GIL.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from dataclasses import dataclass

import numpy as np
from django.conf import settings
from django.db import connection

from analytics.histogram import bin_of
from inference import runtime, storage
from inference.models import ModelVersion, ShadowPrediction
from project import metrics
from project.errors import AppError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ShadowCopy:
    """One answered request, as the shadow needs it."""

    prediction_id: int
    shadow: ModelVersion
    answered_version: int
    rows: np.ndarray  # the matrix the answering model read
    answer: np.ndarray  # what it answered: class labels, or values
    answered_latency_ms: float


class ShadowRunner:
    """This worker's queue of copies, and the thread that runs them."""

    BATCH = 64  # copies written per statement

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queue: queue.Queue[ShadowCopy] | None = None
        self._pid = 0

    def submit(self, copy: ShadowCopy) -> bool:
        """Queue a copy for the shadow; False (and counted) when the queue is full (or has no room
        at all: SHADOW_QUEUE_SIZE 0 turns shadow runs off)."""
        if settings.SHADOW_QUEUE_SIZE <= 0:
            metrics.SHADOW_RUNS.labels(copy.shadow.name, "dropped").inc()
            return False
        try:
            self._started().put_nowait(copy)
        except queue.Full:
            metrics.SHADOW_RUNS.labels(copy.shadow.name, "dropped").inc()
            return False
        return True

    def wait_until_idle(self, timeout: float) -> bool:
        """Whether every queued copy was run and written within `timeout` seconds (tests, bench)."""
        deadline = time.monotonic() + timeout
        work = self._queue
        while work is not None and work.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.01)
        return work is None or not work.unfinished_tasks

    def _started(self) -> queue.Queue[ShadowCopy]:
        """The queue, with its thread running in this process (a forked worker starts its own)."""
        if self._pid == os.getpid() and self._queue is not None:
            return self._queue
        with self._lock:
            if self._pid != os.getpid() or self._queue is None:
                work: queue.Queue[ShadowCopy] = queue.Queue(maxsize=settings.SHADOW_QUEUE_SIZE)
                threading.Thread(target=self._run, args=(work,), name="shadow-runs", daemon=True).start()
                self._queue, self._pid = work, os.getpid()
        return self._queue

    def _run(self, work: queue.Queue[ShadowCopy]) -> None:
        while True:
            batch = [work.get()]
            while len(batch) < self.BATCH:
                try:
                    batch.append(work.get_nowait())
                except queue.Empty:
                    break
            try:
                _write(list(map(_shadow_row, batch)))
            except Exception:  # a shadow must never take the worker down; its rows are lost, and said so
                logger.exception("could not store %d shadow runs", len(batch))
            finally:
                connection.close()  # this thread's connection goes back to the pool between batches
                for _copy in batch:
                    work.task_done()


def _shadow_row(copy: ShadowCopy) -> ShadowPrediction:
    shadow = copy.shadow
    row = ShadowPrediction(
        prediction_id=copy.prediction_id,
        model_version=shadow,
        model_name=shadow.name,
        version=shadow.version,
        answered_version=copy.answered_version,
        n_rows=len(copy.rows),
        answered_latency_ms=copy.answered_latency_ms,
        answered_latency_bin=bin_of(copy.answered_latency_ms),
        latency_ms=0.0,
    )
    started = time.perf_counter()
    try:
        result = runtime.load(shadow).predict(copy.rows)
    except AppError as exc:  # the shadow's file is missing or tampered with: recorded as such
        row.error_code = exc.code
    except Exception:
        logger.exception("shadow %s failed on prediction %s", shadow, copy.prediction_id)
        row.error_code = "shadow_failed"
    else:
        row.latency_ms = (time.perf_counter() - started) * 1000
        row.latency_bin = bin_of(row.latency_ms)
        if not result.finite:
            row.error_code = "not_finite"
        else:
            row.outputs = storage.encode_outputs(indices=result.indices, values=result.values, classes=shadow.classes)
            ours = np.asarray(result.predictions)
            if shadow.classes is not None:
                row.agreed_rows = int(np.count_nonzero(ours == copy.answer))
            else:
                row.abs_diff_sum = float(np.abs(ours.astype(np.float64) - copy.answer.astype(np.float64)).sum())
    metrics.SHADOW_RUNS.labels(shadow.name, "failed" if row.error_code else "stored").inc()
    return row


def _write(rows: list[ShadowPrediction]) -> None:
    ShadowPrediction.objects.bulk_create(rows)


runner = ShadowRunner()
