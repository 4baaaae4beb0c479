"""make bench-telemetry: what the request log line and the metrics cost a prediction.

1. The log line, end to end: two copies of the service side by side (production server, production
   settings, JSON lines to a file as in bench/predict.py), one with LOG_REQUESTS=true and one with
   false, driven in alternating order per round, single rows at concurrency 16 and at 1.
2. The metrics and the log line, in process: the calls one prediction makes (the request counter and histogram,
   the usage counters, the prediction counters), timed in a loop in prometheus-client's
   multiprocess mode as the workers run it (a metric is a value in an mmap'd file); and one
   request's JSON log line, formatted and written to a file.

Ratios, never absolute times alone: the machine is shared. The load average is printed per round.
BENCH_AA=1 runs the two copies identically (the line on in both), to show the comparison's noise.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile

import requests

from bench.common import PYTHON, ROOT, fresh_database, manage, service, service_env
from bench.predict import CONCURRENCY, MAX_LOAD, ROW, SECONDS, SETUP, WORKERS, python_load, spread, wait_for_quiet, wrk

DATABASE_URL = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/mlserve_bench_telemetry")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/12")
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "4"))
# BENCH_AA=1: the line on in both copies, so the two differ in nothing but which is which: what
# the comparison reads when there is nothing to find (the floor of its noise on this machine).
SAME_ON_BOTH = os.environ.get("BENCH_AA") == "1"
CALLS = 100_000

METRICS_LOOP = f"""
import time
from project import metrics
calls = {CALLS}
started = time.perf_counter()
for _ in range(calls):
    metrics.observe_request(route="v1:prediction-list", method="POST", status=201, seconds=0.003)
    metrics.observe_usage(model="iris", prompt_tokens=0, completion_tokens=0, error_code="")
    metrics.count_prediction(model="iris", version=1, rows=1)
print((time.perf_counter() - started) / calls * 1e6)
"""

LOG_LOOP = f"""
import logging, time
from project import logs
logger = logging.getLogger("mlserve.request")
logs.bind_request_id("5b0e6c1e-7f5c-4a39-9a53-0d7d3c6f6a10")
extra = dict(method="POST", path="/api/v1/predictions/", route="v1:prediction-list", status=201, error_code="",
             latency_ms=3.07, user="bench-client", key_prefix="wXVjFdu2", model="iris", rows=1, response_bytes=211)
calls = {CALLS // 5}
started = time.perf_counter()
for _ in range(calls):
    logger.info("%s %s %s %.1f ms", "POST", "/api/v1/predictions/", 201, 3.07, extra=extra)
print((time.perf_counter() - started) / calls * 1e6)
"""


def log_line_cost_us(env: dict[str, str]) -> float:
    """Microseconds of one request's JSON log line, written to a file as the servers here write it."""
    with tempfile.TemporaryFile("w") as log:
        out = subprocess.run(
            [PYTHON, "manage.py", "shell", "-c", LOG_LOOP],
            cwd=ROOT,
            env={**env, "LOG_REQUESTS": "true"},
            check=True,
            stdout=subprocess.PIPE,
            stderr=log,  # where the handler writes (logging's StreamHandler: stderr)
            text=True,
        ).stdout
    return float(out.split()[-1])


def metrics_cost_us(env: dict[str, str]) -> float:
    """Microseconds of the metrics calls one prediction makes, in multiprocess mode."""
    with tempfile.TemporaryDirectory(prefix="mlserve-bench-metrics-") as directory:
        out = subprocess.run(
            [PYTHON, "manage.py", "shell", "-c", METRICS_LOOP],
            cwd=ROOT,
            env={**env, "PROMETHEUS_MULTIPROC_DIR": directory},
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    return float(out.split()[-1])


def main() -> None:
    load = wrk if shutil.which("wrk") else python_load
    env = service_env(DATABASE_URL, REDIS_URL, RATE_LIMIT_DEFAULT="100000000/m", RATE_LIMIT_PREDICTIONS="100000000/m")
    fresh_database(DATABASE_URL)
    manage(env, "migrate", "--noinput")
    manage(env, "train_demo_models")
    key = manage(env, "shell", "-c", SETUP).split()[-2]
    body = {"model": "iris", "features": ROW}
    cases = {"single": CONCURRENCY, "latency": 1}
    results: dict[str, list[dict]] = {name: [] for name in cases}
    loads = []
    with (
        service({**env, "LOG_REQUESTS": "true"}, workers=WORKERS) as logged,
        service({**env, "LOG_REQUESTS": "true" if SAME_ON_BOTH else "false"}, workers=WORKERS) as quiet,
    ):
        for base in (logged, quiet):
            for _ in range(50):
                url = f"{base}/api/v1/predictions/"
                requests.post(url, json=body, headers={"X-API-Key": key}, timeout=10).raise_for_status()
        for round_no in range(ROUNDS):
            loads.append(wait_for_quiet(MAX_LOAD))
            for name, connections in cases.items():
                order = [logged, quiet] if round_no % 2 == 0 else [quiet, logged]
                measured = {
                    base: load(f"{base}/api/v1/predictions/", body, key=key, connections=connections, seconds=SECONDS)
                    for base in order
                }
                on, off = measured[logged], measured[quiet]
                results[name].append({"on": on, "off": off})
                print(
                    f"round {round_no + 1} {name:8} log lines on {on['rps']:8.1f}/s p50 {on['p50_ms']:.2f} ms   "
                    f"off {off['rps']:8.1f}/s p50 {off['p50_ms']:.2f} ms",
                    flush=True,
                )
    throughput = [r["on"]["rps"] / r["off"]["rps"] for r in results["single"]]
    added = [r["on"]["p50_ms"] - r["off"]["p50_ms"] for r in results["latency"]]
    metrics_us = [metrics_cost_us(env) for _ in range(3)]
    log_us = [log_line_cost_us(env) for _ in range(3)]
    if SAME_ON_BOTH:
        print("\nBENCH_AA=1: the line is on in both copies; 'off' below is a second copy with it on")
    python = sys.version.split()[0]
    print(f"\n{os.cpu_count()} cores, Python {python}, {WORKERS} workers each, {ROUNDS} rounds of {SECONDS} s")
    print(f"load average at the start of each round: {[round(value, 2) for value in loads]} (limit {MAX_LOAD:g})")
    print(f"single-row throughput, log line on / off:  {spread(throughput)}")
    print(f"p50 at concurrency 1, log line on - off:   {spread(added)} ms")
    print(f"metrics calls of one prediction, in process: {statistics.median(metrics_us):.1f} us (3 runs of {CALLS:,})")
    print(f"one JSON log line to a file, in process:     {statistics.median(log_us):.1f} us (3 runs of {CALLS // 5:,})")


if __name__ == "__main__":
    main()
