"""make bench: this service against the tutorial's bare Flask app, side by side.

Both run under gunicorn with one worker per core on the same iris model file; this service with
its production settings (PostgreSQL, Redis, API-key auth, rate limits, request log and prediction
committed before each answer). One load generator (wrk) drives both at a fixed concurrency,
alternating A, B, A, B over several rounds; the ratios are per round, reported as the median
and the spread. wrk when it is installed, else a Python load generator (less able to saturate
the faster server; the report says which ran).

  - single-row throughput, full stack / bare Flask            target >= 0.5
  - added latency at concurrency 1, p50 full - p50 bare       target <= 1 ms
  - 1,000-row batches, rows per second, full / bare           target >= 0.8
  - peak memory per worker with the demo models loaded        reported
  - single rows with a new Idempotency-Key each, / without     reported (one extra round trip)
"""

from __future__ import annotations

import http.client
import json
import os
import platform
import random
import re
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
import urllib.parse
from pathlib import Path

import requests

from bench.common import ROOT, fresh_database, gunicorn, manage, service_env

DATABASE_URL = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/mlserve_bench_predict")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/13")
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "4"))
SECONDS = int(os.environ.get("BENCH_SECONDS", "8"))
CONCURRENCY = int(os.environ.get("BENCH_CONCURRENCY", "16"))
WORKERS = os.cpu_count() or 2
ROW = [5.1, 3.5, 1.4, 0.2]


def batch_rows(n: int = 1000) -> list[list[float]]:
    """Varied iris-like rows, the same every run: a real batch is not one row repeated, and a
    repeated row would flatter what stores it (its jsonb compresses to almost nothing)."""
    rng = random.Random(0)
    spans = ((4.3, 7.9), (2.0, 4.4), (1.0, 6.9), (0.1, 2.5))
    return [[round(rng.uniform(low, high), 1) for low, high in spans] for _ in range(n)]


SETUP = """
from django.contrib.auth import get_user_model
from accounts.services import api_key_create
from inference.models import ModelVersion
from inference.runtime import model_path
user, _ = get_user_model().objects.get_or_create(username="bench-client")
print(api_key_create(user=user, name="bench", created_by=None).key)
print(model_path(ModelVersion.objects.get(name="iris", is_active=True).file))
"""

WRK_SCRIPT = """
wrk.method = "POST"
wrk.body = os.getenv("BENCH_BODY")
wrk.headers["Content-Type"] = "application/json"
local key = os.getenv("BENCH_KEY")
if key ~= nil and key ~= "" then wrk.headers["X-API-Key"] = key end
local idempotent = os.getenv("BENCH_IDEMPOTENT") == "1"
local sent = 0
local run = tostring(math.random(1, 1e9))
function setup(thread)
  thread:set("id", tostring(math.random(1, 1e9)))
end
function request()
  if idempotent then
    sent = sent + 1
    wrk.headers["Idempotency-Key"] = run .. "-" .. id .. "-" .. sent
  end
  return wrk.format()
end
"""


def wrk(
    url: str, body: dict, *, key: str = "", connections: int, seconds: int, idempotent: bool = False
) -> dict[str, float]:
    """Requests per second and p50 latency (ms) from one wrk run."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(WRK_SCRIPT)
    env = {**os.environ, "BENCH_BODY": json.dumps(body), "BENCH_KEY": key, "BENCH_IDEMPOTENT": str(int(idempotent))}
    threads = min(connections, 2)
    out = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", script.name, url],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    Path(script.name).unlink()
    if re.search(r"Non-2xx or 3xx responses: (\d+)", out):
        raise RuntimeError(f"errors during the run:\n{out}")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p50 = re.search(r"50%\s+([\d.]+)(us|ms|s)", out)
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[p50.group(2)]
    return {"rps": rps, "p50_ms": float(p50.group(1)) * scale}


def python_load(
    url: str, body: dict, *, key: str = "", connections: int, seconds: int, idempotent: bool = False
) -> dict[str, float]:
    """The same measurement without wrk: one keep-alive connection per thread, for `seconds`.

    A fallback only: a Python client spends a core of its own, so on a small machine it caps
    the faster server (the bare app) sooner than wrk does, and ratios come out kinder to the
    full stack. The report says which generator ran.
    """
    target = urllib.parse.urlsplit(url)
    payload = json.dumps(body).encode()
    headers = {"Content-Type": "application/json", **({"X-API-Key": key} if key else {})}
    deadline = time.perf_counter() + seconds
    latencies: list[list[float]] = [[] for _ in range(connections)]
    run = random.randrange(10**9)
    failures: list[int] = []

    def worker(index: int) -> None:
        conn = http.client.HTTPConnection(target.hostname, target.port, timeout=30)
        sent = 0
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            sent += 1
            extra = {"Idempotency-Key": f"{run}-{index}-{sent}"} if idempotent else {}
            conn.request("POST", target.path, body=payload, headers={**headers, **extra})
            response = conn.getresponse()
            response.read()
            latencies[index].append((time.perf_counter() - started) * 1000)
            if response.status >= 300:
                failures.append(response.status)
        conn.close()

    started = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    if failures:
        raise RuntimeError(f"errors during the run: {failures[:5]}")
    every = [value for per_thread in latencies for value in per_thread]
    return {"rps": len(every) / elapsed, "p50_ms": statistics.median(every)}


def peak_rss_mb(server_pid_hint: str) -> list[float]:
    """VmHWM of every gunicorn process whose command line holds `server_pid_hint`."""
    peaks = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            status = (proc / "status").read_text()
        except OSError:
            continue
        if server_pid_hint in cmdline and "gunicorn" in cmdline:
            match = re.search(r"VmHWM:\s+(\d+) kB", status)
            if match:
                peaks.append(int(match.group(1)) / 1024)
    return sorted(peaks)


def spread(values: list[float]) -> str:
    return f"median {statistics.median(values):.3g} (min {min(values):.3g}, max {max(values):.3g})"


def main() -> None:
    load = wrk if shutil.which("wrk") else python_load
    print(f"load average (1, 5, 15 min) at the start: {os.getloadavg()}")
    print(f"load generator: {'wrk' if load is wrk else 'Python threads (wrk not found: apt-get install wrk)'}")
    env = service_env(
        DATABASE_URL,
        REDIS_URL,
        WEB_CONCURRENCY=str(WORKERS),
        RATE_LIMIT_DEFAULT="100000000/m",
        RATE_LIMIT_PREDICTIONS="100000000/m",
    )
    fresh_database(DATABASE_URL)
    manage(env, "migrate", "--noinput")
    manage(env, "train_demo_models")
    key, model_file = manage(env, "shell", "-c", SETUP).split()[-2:]
    flask_env = {**os.environ, "BENCH_MODEL_PATH": model_file}
    rows = batch_rows()
    cases = {
        "single": ({"features": ROW}, {"model": "iris", "features": ROW}, CONCURRENCY, 1),
        "latency": ({"features": ROW}, {"model": "iris", "features": ROW}, 1, 1),
        "batch": ({"instances": rows}, {"model": "iris", "instances": rows}, CONCURRENCY, len(rows)),
    }
    # Paired with "single" and "latency" in each round: the same requests with a new key each.
    keyed = {"single": CONCURRENCY, "latency": 1}
    keyed_results: dict[str, list[dict]] = {name: [] for name in keyed}
    results: dict[str, list[dict]] = {name: [] for name in cases}
    memory: dict[str, list[float]] = {}
    flask_args = ("--workers", str(WORKERS), "--chdir", str(ROOT / "bench"))
    service_args = ("--config", "python:project.gunicorn", "--workers", str(WORKERS))
    with (
        gunicorn(flask_env, "flask_app:app", *flask_args) as bare,
        gunicorn(env, "project.wsgi:application", *service_args) as full,
    ):
        # Both warmed: models loaded, connections open.
        for _ in range(50):
            requests.post(f"{bare}/predict", json={"features": ROW}, timeout=10).raise_for_status()
            requests.post(
                f"{full}/api/v1/predictions/", json={"features": ROW}, headers={"X-API-Key": key}, timeout=10
            ).raise_for_status()
        for round_no in range(ROUNDS):
            for name, (bare_body, full_body, connections, rows) in cases.items():
                a = load(f"{bare}/predict", bare_body, connections=connections, seconds=SECONDS)
                b = load(f"{full}/api/v1/predictions/", full_body, key=key, connections=connections, seconds=SECONDS)
                results[name].append({"bare": a, "full": b, "rows": rows})
                print(
                    f"round {round_no + 1} {name:8} bare {a['rps']:8.1f}/s p50 {a['p50_ms']:.2f} ms   "
                    f"full {b['rps']:8.1f}/s p50 {b['p50_ms']:.2f} ms",
                    flush=True,
                )
                if name in keyed:
                    c = load(
                        f"{full}/api/v1/predictions/",
                        full_body,
                        key=key,
                        connections=connections,
                        seconds=SECONDS,
                        idempotent=True,
                    )
                    keyed_results[name].append({"plain": b, "keyed": c})
                    keyed_line = f"with Idempotency-Key {c['rps']:8.1f}/s p50 {c['p50_ms']:.2f} ms"
                    print(f"round {round_no + 1} {name:8} {keyed_line}", flush=True)
        # By bind address: only these two servers' processes, whatever else runs on the machine.
        memory = {"bare": peak_rss_mb(bare.removeprefix("http://")), "full": peak_rss_mb(full.removeprefix("http://"))}

    single = [r["full"]["rps"] / r["bare"]["rps"] for r in results["single"]]
    added = [r["full"]["p50_ms"] - r["bare"]["p50_ms"] for r in results["latency"]]
    batch = [r["full"]["rps"] / r["bare"]["rps"] for r in results["batch"]]
    print(
        f"\nmachine: {platform.node()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"{WORKERS} workers each, concurrency {CONCURRENCY}, {ROUNDS} rounds of {SECONDS} s"
    )
    print(f"single-row throughput, full / bare:   {spread(single)}   target >= 0.5")
    print(f"added p50 latency at concurrency 1:   {spread(added)} ms   target <= 1 ms")
    print(f"1,000-row batch rows/s, full / bare:  {spread(batch)}   target >= 0.8")
    print(f"peak memory per worker (MB): bare {memory['bare']}, full {memory['full']} (incl. gunicorn master)")
    keyed_rps = [r["keyed"]["rps"] / r["plain"]["rps"] for r in keyed_results["single"]]
    keyed_ms = [r["keyed"]["p50_ms"] - r["plain"]["p50_ms"] for r in keyed_results["latency"]]
    print(f"with Idempotency-Key, throughput / without:  {spread(keyed_rps)}")
    print(f"with Idempotency-Key, added p50 at c=1:      {spread(keyed_ms)} ms")
    print(f"load average (1, 5, 15 min) at the end: {os.getloadavg()}")
    print(f"load generator: {'wrk' if load is wrk else 'Python threads'}")
    (ROOT / "bench" / "results").mkdir(exist_ok=True)
    (ROOT / "bench" / "results" / "predict.json").write_text(
        json.dumps(
            {
                "runs": results,
                "memory_mb": memory,
                "single": single,
                "added_ms": added,
                "batch": batch,
                "idempotency_key": keyed_results,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
