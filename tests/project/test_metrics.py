"""GET /metrics: Prometheus text, guarded by METRICS_TOKEN, and exact across worker processes."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from accounts.services import api_key_create
from tests.inference.helpers import IRIS_ROW

TOKEN = "metrics-token-for-tests"


def scrape(base_url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = requests.get(f"{base_url}/metrics", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.mark.parametrize("server", ["production", "gunicorn"])
def test_counts_are_exact_across_four_workers(gunicorn_server, alice, server):
    """N requests spread over 4 workers (many connections, so every worker serves some) show as
    exactly N more on whichever worker answers the scrape."""
    base_url = gunicorn_server(
        workers=4,
        production_config=server == "production",
        gunicorn_config=server == "gunicorn",
        METRICS_TOKEN=TOKEN,
        RATE_LIMIT_DEFAULT="100000/m",
        RATE_LIMIT_PREDICTIONS="100000/m",
    )
    key = api_key_create(user=alice, name="metrics", created_by=None).key
    before = scrape(base_url)
    n_models, n_predictions, n_batches = 120, 90, 10

    def call(i: int) -> int:
        headers = {"X-API-Key": key}
        with requests.Session() as session:  # a new connection each: spread over the workers
            if i < n_models:
                return session.get(f"{base_url}/api/v1/models/", headers=headers, timeout=60).status_code
            body = {"features": IRIS_ROW} if i < n_models + n_predictions else {"instances": [IRIS_ROW] * 7}
            return session.post(f"{base_url}/api/v1/predictions/", json=body, headers=headers, timeout=60).status_code

    with ThreadPoolExecutor(max_workers=24) as pool:
        codes = list(pool.map(call, range(n_models + n_predictions + n_batches)))
    assert codes.count(200) == n_models and codes.count(201) == n_predictions + n_batches
    after = scrape(base_url)

    def more(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    requests_total = "mlserve_http_requests_total"
    assert more(requests_total, route="v1:model-list", method="GET", status="200") == n_models
    assert more(requests_total, route="v1:prediction-list", method="POST", status="201") == n_predictions + n_batches
    assert more("mlserve_http_request_duration_seconds_count", route="v1:model-list", method="GET") == n_models
    assert more("mlserve_predictions_total", model="iris", version="1") == n_predictions + n_batches
    assert more("mlserve_prediction_rows_total", model="iris", version="1") == n_predictions + 7 * n_batches
    # Each worker loads the model once: more than one load seen is more than one worker's files
    # added up by the scrape.
    assert value(after, "mlserve_model_load_seconds_count", model="iris", version="1") >= 2
    in_use = value(after, "mlserve_db_pool_connections", state="in_use")
    idle = value(after, "mlserve_db_pool_connections", state="idle")
    assert in_use + idle >= 1  # every worker that served a request has a pool


def test_rate_limit_refusals_are_counted_by_group(gunicorn_server, alice):
    base_url = gunicorn_server(workers=2, production_config=True, METRICS_TOKEN=TOKEN)
    key = api_key_create(user=alice, name="limited", created_by=None, rate="3/d").key
    before = scrape(base_url)
    codes = [
        requests.post(
            f"{base_url}/api/v1/predictions/", json={"features": IRIS_ROW}, headers={"X-API-Key": key}, timeout=30
        ).status_code
        for _ in range(5)
    ]
    codes += [
        requests.get(f"{base_url}/api/v1/models/", headers={"X-API-Key": key}, timeout=30).status_code for _ in range(5)
    ]
    assert codes == [201] * 3 + [429] * 2 + [200] * 3 + [429] * 2
    after = scrape(base_url)
    refusals = "mlserve_limit_refusals_total"
    assert value(after, refusals, limit="predictions") - value(before, refusals, limit="predictions") == 2
    assert value(after, refusals, limit="default") - value(before, refusals, limit="default") == 2


def test_metrics_need_the_token_and_are_hidden_without_one(client, settings):
    settings.METRICS_TOKEN = ""
    response = client.get("/metrics")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    settings.METRICS_TOKEN = TOKEN
    for header in ({}, {"HTTP_AUTHORIZATION": "Bearer wrong"}, {"HTTP_AUTHORIZATION": TOKEN}):
        response = client.get("/metrics", **header)
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "not_authenticated"
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 200
    assert b"mlserve_http_requests_total" in response.content
    # Any other method: a 405 in the error shape, not Django's CSRF page.
    response = client.post("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert (response.status_code, response["Allow"]) == (405, "GET, HEAD")
    assert response.json()["error"]["code"] == "method_not_allowed"


def test_generation_model_labels_are_bounded(monkeypatch):
    """Upstreams may echo any model name a client sends: past the cap, names share "other"."""
    from prometheus_client import REGISTRY

    from project import metrics

    monkeypatch.setattr(metrics, "_generation_models", set())
    for index in range(metrics.MAX_GENERATION_MODELS + 10):
        metrics.observe_usage(model=f"echoed-{index}", prompt_tokens=1, completion_tokens=0, error_code="")
    labels = {"kind": "prompt"}
    seen = {
        sample.labels["model"]
        for family in REGISTRY.collect()
        if family.name == "mlserve_generation_tokens"
        for sample in family.samples
        if sample.labels.get("kind") == labels["kind"] and sample.labels["model"].startswith("echoed-")
    }
    assert len(seen) == metrics.MAX_GENERATION_MODELS
    assert REGISTRY.get_sample_value("mlserve_generation_tokens_total", {"model": "other", "kind": "prompt"}) >= 10


def test_the_metrics_directory_is_kept_and_only_its_files_cleared(tmp_path, monkeypatch):
    """An operator's METRICS_DIR may be a mount point or under a parent the server cannot write:
    made if missing, its *.db files deleted at start, the directory itself never removed."""
    from project import metrics_directory

    directory = tmp_path / "metrics"
    monkeypatch.setenv("METRICS_DIR", str(directory))
    # Set through monkeypatch first, so that what share_between_workers() sets is undone after.
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", "")
    assert metrics_directory.share_between_workers() == str(directory)  # made
    inode = directory.stat().st_ino
    (directory / "counter_123.db").write_bytes(b"old")
    (directory / "README").write_text("the operator's")
    assert metrics_directory.share_between_workers() == str(directory)
    metrics_directory.remove(str(directory))
    assert directory.stat().st_ino == inode  # the same directory: never removed and made again
    assert sorted(path.name for path in directory.iterdir()) == ["README"]
    assert os.environ["PROMETHEUS_MULTIPROC_DIR"] == str(directory)

    # Without METRICS_DIR: a directory of the server's own, removed at its exit.
    monkeypatch.delenv("METRICS_DIR")
    own = metrics_directory.share_between_workers()
    assert own != str(directory) and os.path.isdir(own)
    metrics_directory.remove(own)
    assert not os.path.exists(own)


def test_a_request_log_row_that_cannot_be_written_is_counted(client_for, alice, monkeypatch):
    from django.db import DatabaseError
    from prometheus_client import REGISTRY

    from analytics.models import RequestLog

    def refuse(**values):
        raise DatabaseError("disk full")

    def failures() -> float:
        return REGISTRY.get_sample_value("mlserve_request_log_write_failures_total") or 0.0

    before = failures()
    monkeypatch.setattr(RequestLog.objects, "create", refuse)
    assert client_for(alice).get("/api/v1/models/").status_code == 200  # the answer is not lost
    assert failures() == before + 1
    monkeypatch.undo()
    assert client_for(alice).get("/api/v1/models/").status_code == 200
    assert failures() == before + 1  # a row written is not a failure
