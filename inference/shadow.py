"""Shadow runs: a roll-out's shadow version answers a copy of each default request, off the
request path, after the answer has been sent.

The prediction route hands its rows to this worker's queue once its answer has gone (the
response's close) and is done; one thread per worker takes the copies waiting, runs the shadow
model once on all their rows (a batch costs the model about what one row does), compares each
copy's outputs with its answer's (same class per row, for classifiers; the absolute difference,
for regressors) and writes a ShadowPrediction per copy, linked to the prediction that was
answered, in one statement. The queue is bounded by rows (SHADOW_QUEUE_ROWS): a copy that would
pass the bound is dropped and counted (mlserve_shadow_runs_total{outcome="dropped"}), since a
shadow must never slow the answers, and a queue that only grows would, through memory and the
GIL. Copies still queued when a worker stops are lost, uncounted: the comparison reads what was
stored, and a few missing copies do not bias it.
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
from django.db import DatabaseError, connection, transaction

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

    BATCH = 64  # copies run and written together, at most

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queue: queue.Queue[ShadowCopy] | None = None
        self._pid = 0
        self._rows = 0  # rows waiting in the queue

    def submit(self, copy: ShadowCopy) -> bool:
        """Queue a copy for the shadow; False (and counted) when its rows would pass the bound
        (SHADOW_QUEUE_ROWS 0 turns shadow runs off)."""
        work = self._started()
        rows = len(copy.rows)
        with self._lock:
            if self._rows + rows > settings.SHADOW_QUEUE_ROWS:
                metrics.SHADOW_RUNS.labels(copy.shadow.name, "dropped").inc()
                return False
            self._rows += rows
        work.put_nowait(copy)  # unbounded by count: the rows bound it
        return True

    def wait_until_idle(self, timeout: float) -> bool:
        """Whether every queued copy was run and written within `timeout` seconds (tests)."""
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
                work: queue.Queue[ShadowCopy] = queue.Queue()
                threading.Thread(target=self._run, args=(work,), name="shadow-runs", daemon=True).start()
                self._queue, self._pid, self._rows = work, os.getpid(), 0
        return self._queue

    def _run(self, work: queue.Queue[ShadowCopy]) -> None:
        while True:
            batch = [work.get()]
            # Gather for a moment: one model call and one statement per batch, and the GIL taken
            # once per batch rather than once per answered request (each take can hold a request
            # thread up to the interpreter's switch interval, 5 ms).
            deadline = time.monotonic() + settings.SHADOW_BATCH_SECONDS
            while len(batch) < self.BATCH and (left := deadline - time.monotonic()) > 0:
                try:
                    batch.append(work.get(timeout=left))
                except queue.Empty:
                    break
            with self._lock:
                self._rows -= sum(len(copy.rows) for copy in batch)
            try:
                _write([row for group in _by_shadow(batch) for row in _shadow_rows(group)])
            except Exception:  # a shadow must never take the worker down; its rows are lost, and said so
                logger.exception("could not store %d shadow runs", len(batch))
            finally:
                connection.close()  # this thread's connection goes back to the pool between batches
                for _copy in batch:
                    work.task_done()


def _by_shadow(batch: list[ShadowCopy]) -> list[list[ShadowCopy]]:
    groups: dict[int, list[ShadowCopy]] = {}
    for copy in batch:
        groups.setdefault(copy.shadow.pk, []).append(copy)
    return list(groups.values())


def _shadow_rows(group: list[ShadowCopy]) -> list[ShadowPrediction]:
    """One model call for the rows of every copy in the group (one shadow version), then a row
    per copy. A copy's latency is its share, by rows, of that call's time."""
    shadow = group[0].shadow
    rows = [
        ShadowPrediction(
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
        for copy in group
    ]
    matrix = group[0].rows if len(group) == 1 else np.concatenate([copy.rows for copy in group])
    started = time.perf_counter()
    try:
        result = runtime.load(shadow).predict(matrix)
    except AppError as exc:  # the shadow's file is missing or tampered with: recorded as such
        return _failed(rows, exc.code)
    except Exception:
        logger.exception("shadow %s failed on %d copies", shadow, len(group))
        return _failed(rows, "shadow_failed")
    elapsed_ms = (time.perf_counter() - started) * 1000
    outputs = np.asarray(result.predictions)
    start = 0
    for copy, row in zip(group, rows, strict=True):
        end = start + len(copy.rows)
        row.latency_ms = elapsed_ms * (end - start) / len(matrix)
        row.latency_bin = bin_of(row.latency_ms)
        ours = outputs[start:end]
        if shadow.classes is not None:
            finite = result.matrix is None or bool(np.isfinite(result.matrix[start:end]).all())
        else:
            finite = bool(np.isfinite(ours.astype(np.float64)).all())
        if not finite:
            row.error_code = "not_finite"
        else:
            row.outputs = storage.encode_outputs(
                indices=None if result.indices is None else result.indices[start:end],
                values=None if result.values is None else result.values[start:end],
                classes=shadow.classes,
            )
            if shadow.classes is not None:
                row.agreed_rows = int(np.count_nonzero(ours == copy.answer))
            else:
                row.abs_diff_sum = float(np.abs(ours.astype(np.float64) - copy.answer.astype(np.float64)).sum())
        metrics.SHADOW_RUNS.labels(shadow.name, "failed" if row.error_code else "stored").inc()
        start = end
    return rows


def _failed(rows: list[ShadowPrediction], code: str) -> list[ShadowPrediction]:
    for row in rows:
        row.error_code = code
        metrics.SHADOW_RUNS.labels(row.model_name, "failed").inc()
    return rows


def _write(rows: list[ShadowPrediction]) -> None:
    """One statement for the batch; if it fails (a prediction deleted meanwhile, its link gone),
    row by row, so one bad copy does not lose the others."""
    try:
        with transaction.atomic():
            ShadowPrediction.objects.bulk_create(rows)
    except DatabaseError:
        for row in rows:
            try:
                with transaction.atomic():
                    row.save(force_insert=True)
            except DatabaseError:
                logger.warning("shadow run of prediction %s not stored", row.prediction_id)


runner = ShadowRunner()
