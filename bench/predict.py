"""make bench: this service against the tutorial's bare Flask app, side by side.

The bare app runs under gunicorn, this service under its production server (project/serve.py;
BENCH_SERVER=gunicorn for gunicorn's threaded workers), one worker per core each, on the same
iris model file; this service with its production settings (PostgreSQL through its pool, Redis,
API-key auth, rate limits, prediction and request log committed before each answer). One load
generator (wrk) drives both at a fixed concurrency, in rounds that alternate which goes first;
the ratios are per round, reported as the median and the spread.

  - single-row throughput, full / bare                         target >= 0.45
  - added p50 latency at concurrency 1, full - bare            target <= +2.5 ms
  - 1,000-row batches, rows per second, full / bare            target >= 0.45
  - peak memory per worker with the demo models loaded         target <= 200 MB
  - concurrency 128 for 30 s, 4 workers, against PostgreSQL's max_connections (100 by default):
    errors                                                     target 0
  - single rows with a new Idempotency-Key each, / without     reported
  - the Open Inference Protocol's route (/v2/models/iris/infer, JSON tensors), single rows and
    1,000-row batches, / /api/v1/predictions/ in the same round   reported
  - single rows with a roll-out's shadow version on, / off (throughput at concurrency 16, and
    added p50 at concurrency 1)                                   reported

BENCH_PARTS=shadow runs the shadow rounds alone.

The machine is shared: the load average is recorded before each round, a round that starts
above BENCH_MAX_LOAD (default: the number of cores) is marked, and a run in which half the
rounds are marked says that its figures are not to be trusted.
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

import psycopg
import requests

from bench.common import ROOT, fresh_database, gunicorn, manage, service, service_env

DATABASE_URL = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/mlserve_bench_predict")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/13")
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "4"))
SECONDS = int(os.environ.get("BENCH_SECONDS", "8"))
CONCURRENCY = int(os.environ.get("BENCH_CONCURRENCY", "16"))
BURST_CONCURRENCY, BURST_SECONDS = 128, int(os.environ.get("BENCH_BURST_SECONDS", "30"))
BURST_WORKERS = 4
SERVER = os.environ.get("BENCH_SERVER", "production")
WORKERS = os.cpu_count() or 2
MAX_LOAD = float(os.environ.get("BENCH_MAX_LOAD", str(WORKERS)))
ROW = [5.1, 3.5, 1.4, 0.2]


def batch_rows(n: int = 1000) -> list[list[float]]:
    """Varied iris-like rows, the same every run: a real batch is not one row repeated, and a
    repeated row would flatter what stores it."""
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
    url: str,
    body: dict,
    *,
    key: str = "",
    connections: int,
    seconds: int,
    idempotent: bool = False,
    strict: bool = True,
) -> dict[str, float]:
    """Requests per second, p50 latency (ms) and errors (non-2xx answers and socket errors) of one wrk run."""
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
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sockets = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    errors = (int(non_2xx.group(1)) if non_2xx else 0) + (sum(map(int, sockets.groups())) if sockets else 0)
    if strict and errors:
        raise RuntimeError(f"errors during the run:\n{out}")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p50 = re.search(r"50%\s+([\d.]+)(us|ms|s)", out)
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[p50.group(2)]
    requests_done = int(re.search(r"(\d+) requests in", out).group(1))
    return {"rps": rps, "p50_ms": float(p50.group(1)) * scale, "errors": errors, "requests": requests_done}


def python_load(
    url: str,
    body: dict,
    *,
    key: str = "",
    connections: int,
    seconds: int,
    idempotent: bool = False,
    strict: bool = True,
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
    failures: list[int] = []
    run = random.randrange(10**9)

    def worker(index: int) -> None:
        conn = http.client.HTTPConnection(target.hostname, target.port, timeout=30)
        sent = 0
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            sent += 1
            extra = {"Idempotency-Key": f"{run}-{index}-{sent}"} if idempotent else {}
            try:
                conn.request("POST", target.path, body=payload, headers={**headers, **extra})
                response = conn.getresponse()
                response.read()
            except OSError:
                failures.append(0)
                conn.close()
                conn = http.client.HTTPConnection(target.hostname, target.port, timeout=30)
                continue
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
    if strict and failures:
        raise RuntimeError(f"errors during the run: {failures[:5]}")
    every = [value for per_thread in latencies for value in per_thread]
    return {
        "rps": len(every) / elapsed,
        "p50_ms": statistics.median(every),
        "errors": len(failures),
        "requests": len(every) + len(failures),
    }


def peak_rss_mb(bind: str) -> list[float]:
    """VmHWM of every process started to serve `bind` (its address in the command line or the
    environment): the server and its workers."""
    peaks = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            environ = (proc / "environ").read_bytes().replace(b"\0", b" ").decode()
            status = (proc / "status").read_text()
        except OSError:
            continue
        if bind in cmdline or f"BIND={bind}" in environ:
            match = re.search(r"VmHWM:\s+(\d+) kB", status)
            if match:
                peaks.append(round(int(match.group(1)) / 1024, 1))
    return sorted(peaks)


def spread(values: list[float]) -> str:
    if not values:
        return "(no rounds)"
    return f"median {statistics.median(values):.3g} (min {min(values):.3g}, max {max(values):.3g})"


def wait_for_quiet(limit: float, seconds: float = 180) -> float:
    """The 1-minute load average once it is under `limit`, or after `seconds` of waiting for it
    (after a 128-client burst the average takes two to three minutes to fall from ~17 to 2)."""
    deadline = time.monotonic() + seconds
    while os.getloadavg()[0] > limit and time.monotonic() < deadline:
        time.sleep(2)
    return os.getloadavg()[0]


def database_connections() -> tuple[int, int]:
    """(connections open now to the benchmark's database, PostgreSQL's max_connections)."""
    admin = urllib.parse.urlparse(DATABASE_URL)._replace(path="/postgres").geturl()
    database = urllib.parse.urlparse(DATABASE_URL).path.lstrip("/")
    with psycopg.connect(admin, autocommit=True) as conn:
        used = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s", [database]).fetchone()[0]
        limit = int(conn.execute("SHOW max_connections").fetchone()[0])
    return used, limit


def burst(env: dict[str, str], key: str, load: object) -> dict[str, float]:
    """Concurrency 128 for BURST_SECONDS against BURST_WORKERS workers: errors, and the most
    database connections the service held meanwhile."""
    most, stop = 0, threading.Event()

    def sample() -> None:
        nonlocal most
        while not stop.is_set():
            most = max(most, database_connections()[0])
            time.sleep(0.2)

    with service(env, workers=BURST_WORKERS, server=SERVER) as full:
        sampler = threading.Thread(target=sample)
        sampler.start()
        try:
            result = load(
                f"{full}/api/v1/predictions/",
                {"model": "iris", "features": ROW},
                key=key,
                connections=BURST_CONCURRENCY,
                seconds=BURST_SECONDS,
                strict=False,
            )
        finally:
            stop.set()
            sampler.join()
    return {**result, "most_connections": most, "max_connections": database_connections()[1]}


def prepared() -> tuple[dict[str, str], str, str]:
    """(the service's environment, an API key, the iris model's file) on a fresh database."""
    env = service_env(DATABASE_URL, REDIS_URL, RATE_LIMIT_DEFAULT="100000000/m", RATE_LIMIT_PREDICTIONS="100000000/m")
    fresh_database(DATABASE_URL)
    manage(env, "migrate", "--noinput")
    manage(env, "train_demo_models")
    key, model_file = manage(env, "shell", "-c", SETUP).split()[-2:]
    return env, key, model_file


def shadow_figures(found: list[dict]) -> tuple[list[float], list[float]]:
    """Per round: throughput with a shadow / without, and the p50 it added at concurrency 1."""
    throughput = [r["single_on"]["rps"] / r["single_off"]["rps"] for r in found]
    added = [r["latency_on"]["p50_ms"] - r["latency_off"]["p50_ms"] for r in found]
    return throughput, added


def shadow_only() -> None:
    """BENCH_PARTS=shadow: the shadow rounds alone (about 5 minutes)."""
    load = wrk if shutil.which("wrk") else python_load
    env, key, model_file = prepared()
    with service(env, workers=WORKERS, server=SERVER) as full:
        for _ in range(50):
            requests.post(
                f"{full}/api/v1/predictions/", json={"features": ROW}, headers={"X-API-Key": key}, timeout=10
            ).raise_for_status()
        found = shadow_rounds(env, full, key, load, model_file)
    throughput, added = shadow_figures(found)
    print(f"\nwith a shadow version on, throughput / off:  {spread(throughput)}")
    print(f"with a shadow version on, added p50 at c=1:  {spread(added)} ms")


def oip_body(rows: list[list[float]]) -> dict:
    """The same rows as an Open Inference Protocol request (JSON tensors: wrk sends text)."""
    return {"inputs": [{"name": "input-0", "shape": [len(rows), len(rows[0])], "datatype": "FP64", "data": rows}]}


SHADOW_ON = """
from inference.rollouts import rollout_set
rollout_set(name="iris", canary_version=None, canary_percent=0, shadow_version=2, by=None, via="command")
"""
SHADOW_OFF = """
from inference.models import Rollout
from inference.rollouts import rollout_end
if Rollout.objects.filter(name="iris").exists():
    rollout_end(name="iris", by=None, via="command")
"""


def shadow_rounds(env: dict[str, str], full: str, key: str, load: object, model_file: str) -> list[dict]:
    """Single rows with a shadow version (the same model file, registered again as version 2) on
    and off, at CONCURRENCY (throughput) and at concurrency 1 (latency), alternating which goes
    first; each pair is one round."""
    manage(env, "register_model", "iris", model_file)
    found = []
    for round_no in range(ROUNDS):
        wait_for_quiet(MAX_LOAD)
        measured: dict[str, dict] = {}
        for state in ("off", "on") if round_no % 2 == 0 else ("on", "off"):
            manage(env, "shell", "-c", SHADOW_ON if state == "on" else SHADOW_OFF)
            for kind, connections in (("single", CONCURRENCY), ("latency", 1)):
                measured[f"{kind}_{state}"] = load(  # type: ignore[operator]
                    f"{full}/api/v1/predictions/", {"features": ROW}, key=key, connections=connections, seconds=SECONDS
                )
        manage(env, "shell", "-c", SHADOW_OFF)
        found.append(measured)
        for kind in ("single", "latency"):
            on, off = measured[f"{kind}_on"], measured[f"{kind}_off"]
            print(
                f"shadow round {round_no + 1} {kind:8}: off {off['rps']:8.1f}/s p50 {off['p50_ms']:.2f} ms   "
                f"on {on['rps']:8.1f}/s p50 {on['p50_ms']:.2f} ms",
                flush=True,
            )
    return found


def main() -> None:
    if os.environ.get("BENCH_PARTS") == "shadow":
        shadow_only()
        return
    load = wrk if shutil.which("wrk") else python_load
    generator = "wrk" if load is wrk else "Python threads (wrk not found: apt-get install wrk)"
    print(f"load generator: {generator}; server: {SERVER}; load average at the start: {os.getloadavg()}")
    env, key, model_file = prepared()
    flask_env = {**os.environ, "BENCH_MODEL_PATH": model_file}
    rows = batch_rows()
    cases = {
        "single": ({"features": ROW}, {"model": "iris", "features": ROW}, CONCURRENCY, 1),
        "latency": ({"features": ROW}, {"model": "iris", "features": ROW}, 1, 1),
        "batch": ({"instances": rows}, {"model": "iris", "instances": rows}, CONCURRENCY, len(rows)),
    }
    # Paired with "single" and "latency" in each round: the same requests with a new key each.
    keyed = {"single": CONCURRENCY, "latency": 1}
    # Paired with "single" and "batch": the same rows through the Open Inference Protocol's route.
    oip = {"single": oip_body([ROW]), "batch": oip_body(rows)}
    oip_results: dict[str, list[dict]] = {name: [] for name in oip}
    results: dict[str, list[dict]] = {name: [] for name in cases}
    keyed_results: dict[str, list[dict]] = {name: [] for name in keyed}
    loads: list[float] = []
    flask_args = ("--workers", str(WORKERS), "--chdir", str(ROOT / "bench"))
    with (
        gunicorn(flask_env, "flask_app:app", *flask_args) as bare,
        service(env, workers=WORKERS, server=SERVER) as full,
    ):
        # Both warmed: models loaded, connections open.
        for _ in range(50):
            requests.post(f"{bare}/predict", json={"features": ROW}, timeout=10).raise_for_status()
            requests.post(
                f"{full}/api/v1/predictions/", json={"features": ROW}, headers={"X-API-Key": key}, timeout=10
            ).raise_for_status()
        for round_no in range(ROUNDS):
            loads.append(wait_for_quiet(MAX_LOAD))
            mark = " (loaded)" if loads[-1] > MAX_LOAD else ""
            for name, (bare_body, full_body, connections, batch) in cases.items():
                runs = [
                    (f"{bare}/predict", bare_body, ""),
                    (f"{full}/api/v1/predictions/", full_body, key),
                ]
                # Alternate which goes first, so a drift in the machine's load does not favour one.
                order = runs if round_no % 2 == 0 else runs[::-1]
                measured = {
                    url: load(url, body, key=credential, connections=connections, seconds=SECONDS)
                    for url, body, credential in order
                }
                a, b = measured[runs[0][0]], measured[runs[1][0]]
                results[name].append({"bare": a, "full": b, "rows": batch, "load": loads[-1]})
                print(
                    f"round {round_no + 1}{mark} {name:8} bare {a['rps']:8.1f}/s p50 {a['p50_ms']:.2f} ms   "
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
                    print(f"round {round_no + 1}{mark} {name:8} {keyed_line}", flush=True)
                if name in oip:
                    url = f"{full}/v2/models/iris/infer"
                    d = load(url, oip[name], key=key, connections=connections, seconds=SECONDS)
                    oip_results[name].append({"rest": b, "oip": d})
                    print(f"round {round_no + 1}{mark} {name:8} OIP /v2 {d['rps']:8.1f}/s p50 {d['p50_ms']:.2f} ms")
        shadow_results = shadow_rounds(env, full, key, load, model_file)
        # By bind address: only these two servers' processes, whatever else runs on the machine.
        memory = {
            "bare": peak_rss_mb(bare.removeprefix("http://")),
            "full": peak_rss_mb(full.removeprefix("http://")),
        }
    wait_for_quiet(MAX_LOAD)
    burst_result = burst(env, key, load)

    single = [r["full"]["rps"] / r["bare"]["rps"] for r in results["single"]]
    added = [r["full"]["p50_ms"] - r["bare"]["p50_ms"] for r in results["latency"]]
    batch_ratio = [r["full"]["rps"] / r["bare"]["rps"] for r in results["batch"]]
    keyed_rps = [r["keyed"]["rps"] / r["plain"]["rps"] for r in keyed_results["single"]]
    keyed_ms = [r["keyed"]["p50_ms"] - r["plain"]["p50_ms"] for r in keyed_results["latency"]]
    oip_single = [r["oip"]["rps"] / r["rest"]["rps"] for r in oip_results["single"]]
    oip_batch = [r["oip"]["rps"] / r["rest"]["rps"] for r in oip_results["batch"]]
    shadow_rps, shadow_ms = shadow_figures(shadow_results)
    workers_peak = max(memory["full"], default=0.0)
    loaded = sum(value > MAX_LOAD for value in loads)
    print(
        f"\nmachine: {platform.node()}, {os.cpu_count()} cores, Python {platform.python_version()}, server {SERVER}, "
        f"{WORKERS} workers each, concurrency {CONCURRENCY}, {ROUNDS} rounds of {SECONDS} s, load generator {generator}"
    )
    print(f"load average at the start of each round: {[round(value, 2) for value in loads]} (limit {MAX_LOAD:g})")
    if loaded * 2 >= max(ROUNDS, 1):
        print(f"WARNING: {loaded} of {ROUNDS} rounds started on a loaded machine: these figures are not to be trusted")
    print(f"single-row throughput, full / bare:   {spread(single)}   target >= 0.45")
    print(f"added p50 latency at concurrency 1:   {spread(added)} ms   target <= +2.5 ms")
    print(f"1,000-row batch rows/s, full / bare:  {spread(batch_ratio)}   target >= 0.45")
    print(f"peak memory per process (MB): bare {memory['bare']}, full {memory['full']}   target <= 200 MB a worker")
    print(
        f"concurrency {BURST_CONCURRENCY} for {BURST_SECONDS} s, {BURST_WORKERS} workers: "
        f"{burst_result['errors']} errors in {burst_result['requests']} requests ({burst_result['rps']:.0f}/s), "
        f"at most {burst_result['most_connections']} database connections of max_connections "
        f"{burst_result['max_connections']}   target 0 errors"
    )
    print(f"with Idempotency-Key, throughput / without:  {spread(keyed_rps)}")
    print(f"with Idempotency-Key, added p50 at c=1:      {spread(keyed_ms)} ms")
    print(f"OIP /v2 infer, single rows / REST:           {spread(oip_single)}")
    print(f"OIP /v2 infer, 1,000-row batches / REST:     {spread(oip_batch)}")
    print(f"with a shadow version on, throughput / off:  {spread(shadow_rps)}")
    print(f"with a shadow version on, added p50 at c=1:  {spread(shadow_ms)} ms")
    (ROOT / "bench" / "results").mkdir(exist_ok=True)
    (ROOT / "bench" / "results" / "predict.json").write_text(
        json.dumps(
            {
                "server": SERVER,
                "loads": loads,
                "runs": results,
                "memory_mb": memory,
                "single": single,
                "added_ms": added,
                "batch": batch_ratio,
                "idempotency_key": keyed_results,
                "oip": oip_results,
                "shadow": shadow_results,
                "burst": burst_result,
                "peak_worker_mb": workers_peak,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
