"""Logs: one JSON line per request, the request id (a client's own UUID, or a new one) echoed,
stored and on every line the request wrote; each line once; no secret in any of them; Sentry
events scrubbed."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests
from django.conf import settings

from accounts.services import api_key_create
from analytics.models import RequestLog
from tests.conftest import PASSWORD
from tests.inference.helpers import IRIS_ROW


def _server_log(tmp_path: Path) -> list[str]:
    [log] = list(tmp_path.glob("gunicorn-*.log"))
    return log.read_text().splitlines()


def _json_lines(tmp_path: Path) -> list[dict]:
    lines = []
    for line in _server_log(tmp_path):
        if line.startswith("{"):
            lines.append(json.loads(line))
    return lines


def _wait_for(find, seconds: float = 30.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if found := find():
            return found
        time.sleep(0.1)
    raise AssertionError("not found in time")


def test_one_json_line_per_request_with_the_clients_request_id(gunicorn_server, alice, tmp_path, fake_openai):
    fake_openai.mode = "500"
    base_url = gunicorn_server(
        workers=2,
        production_config=True,
        LOG_FORMAT="json",
        OPENAI_BASE_URL=fake_openai.base_url,
        OPENAI_API_KEY="sk-upstream-secret-key",
        OPENAI_MAX_RETRIES="0",
    )
    created = api_key_create(user=alice, name="logs", created_by=None)
    mine = uuid.uuid4()
    response = requests.post(
        f"{base_url}/api/v1/predictions/",
        json={"features": IRIS_ROW},
        headers={"X-API-Key": created.key, "X-Request-ID": str(mine)},
        timeout=30,
    )
    assert response.status_code == 201
    assert response.headers["X-Request-ID"] == str(mine)
    assert RequestLog.objects.get(request_id=mine).status == 201

    # nginx's $request_id: 32 hex digits, taken as the same UUID.
    hex_id = uuid.uuid4().hex
    response = requests.get(
        f"{base_url}/api/v1/models/", headers={"X-API-Key": created.key, "X-Request-ID": hex_id}, timeout=30
    )
    assert response.headers["X-Request-ID"] == str(uuid.UUID(hex_id))

    # Not a UUID: a new id, never an error.
    for bad in ("abc", "x" * 500, "1' OR 1=1"):
        response = requests.get(
            f"{base_url}/api/v1/models/", headers={"X-API-Key": created.key, "X-Request-ID": bad}, timeout=30
        )
        assert response.status_code == 200
        assert uuid.UUID(response.headers["X-Request-ID"]) and response.headers["X-Request-ID"] != bad

    # A request that logs on its way (the upstream fails): its lines carry its id too.
    failing = uuid.uuid4()
    response = requests.post(
        f"{base_url}/api/v1/generations/",
        json={"prompt": "hello"},
        headers={"Authorization": f"Bearer {created.key}", "X-Request-ID": str(failing)},
        timeout=30,
    )
    assert response.status_code == 502

    lines = _wait_for(lambda: [line for line in _json_lines(tmp_path) if line.get("request_id") == str(failing)][1:])
    request_lines = [line for line in _json_lines(tmp_path) if line["logger"] == "mlserve.request"]
    prediction = next(line for line in request_lines if line["request_id"] == str(mine))
    assert prediction["route"] == "v1:prediction-list" and prediction["status"] == 201
    assert prediction["user"] == "alice" and prediction["key_prefix"] == created.api_key.prefix
    assert prediction["rows"] == 1 and prediction["model"] == "iris" and prediction["latency_ms"] > 0
    assert {"timestamp", "level", "message"} <= prediction.keys()
    # Every request, once each (the fixture's start-up probes of /healthz aside).
    assert len([line for line in request_lines if line["route"] != "healthz"]) == 6
    by_failing = [line for line in _json_lines(tmp_path) if line.get("request_id") == str(failing)]
    assert any(line["logger"] == "inference.llm" for line in by_failing), by_failing
    assert [line["status"] for line in by_failing if line["logger"] == "mlserve.request"] == [502]
    assert lines

    # No secret in any line.
    text = "\n".join(_server_log(tmp_path))
    assert created.key not in text and "sk-upstream-secret-key" not in text


def test_no_password_or_token_reaches_the_log(gunicorn_server, alice, tmp_path):
    base_url = gunicorn_server(workers=1, production_config=True, LOG_FORMAT="json", LOG_LEVEL="DEBUG")
    tokens = requests.post(
        f"{base_url}/api/v1/auth/token/", json={"username": "alice", "password": PASSWORD}, timeout=30
    ).json()
    requests.post(
        f"{base_url}/api/v1/auth/token/", json={"username": "alice", "password": "wrong-guess-123"}, timeout=30
    )
    bearer_header = {"Authorization": f"Bearer {tokens['access']}"}
    requests.get(f"{base_url}/api/v1/models/", headers=bearer_header, timeout=30)
    # A query string is not logged either (a client may put anything there), on a route that
    # succeeds and on one that fails (Django's own line for a 4xx names the path only).
    requests.get(f"{base_url}/api/v1/models/?q=query-secret-1", headers=bearer_header, timeout=30)
    requests.get(f"{base_url}/api/v1/nowhere/?q=query-secret-2", headers=bearer_header, timeout=30)
    requests.post(f"{base_url}/api/v1/auth/token/refresh/", json={"refresh": tokens["refresh"]}, timeout=30)
    text = _wait_for(lambda: "\n".join(_server_log(tmp_path)) if len(_json_lines(tmp_path)) >= 6 else "")
    assert "/api/v1/nowhere/" in text  # the lines are there
    for secret in (
        PASSWORD,
        "wrong-guess-123",
        tokens["access"],
        tokens["refresh"],
        "query-secret-1",
        "query-secret-2",
    ):
        assert secret not in text


def test_each_line_is_printed_once_under_make_run(tmp_path):
    """Django's own console handler is off: a django.request warning is one line, not two."""
    script = (
        "import django, logging; django.setup(); "
        "logging.getLogger('django.request').warning('only-once'); "
        "logging.getLogger('inference').info('app-line')"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "project.settings.dev", "DJANGO_DEBUG": "true"}
    env.pop("LOG_FORMAT", None)
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=settings.BASE_DIR, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    output = done.stdout + done.stderr
    assert output.count("only-once") == 1, output
    assert output.count("app-line") == 1, output
    assert not output.lstrip().startswith("{")  # console lines under make run


class _FakeSentry(BaseHTTPRequestHandler):
    """Takes Sentry envelopes, as a Sentry server's ingest endpoint would."""

    received: list[bytes] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        encoding = self.headers.get("Content-Encoding")
        if encoding == "gzip":
            body = gzip.decompress(body)
        elif encoding == "br":  # the SDK's choice when brotli is installed (the test tools bring it)
            import brotli

            body = brotli.decompress(body)
        type(self).received.append(body)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def fake_sentry():
    _FakeSentry.received = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakeSentry)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()


def test_sentry_events_carry_the_request_id_and_no_secret(gunicorn_server, alice, fake_openai, fake_sentry):
    fake_openai.mode = "500"
    port = fake_sentry.server_address[1]
    base_url = gunicorn_server(
        workers=1,
        production_config=True,
        SENTRY_DSN=f"http://publickey@127.0.0.1:{port}/1",
        OPENAI_BASE_URL=fake_openai.base_url,
        OPENAI_API_KEY="sk-upstream-secret-key",
        OPENAI_MAX_RETRIES="0",
    )
    created = api_key_create(user=alice, name="sentry", created_by=None)
    request_id = uuid.uuid4()
    response = requests.post(
        f"{base_url}/api/v1/generations/?password=in-the-query",
        json={"prompt": "my secret prompt", "password": "in-the-body"},
        headers={"X-API-Key": created.key, "X-Request-ID": str(request_id), "Cookie": "sessionid=abc123secret"},
        timeout=30,
    )
    assert response.status_code == 502
    envelopes = _wait_for(lambda: list(_FakeSentry.received))
    text = b"\n".join(envelopes).decode()
    assert str(request_id) in text  # the event is tagged with it
    for secret in (
        created.key,
        "sk-upstream-secret-key",
        "in-the-query",
        "in-the-body",
        "my secret prompt",
        "abc123secret",
    ):
        assert secret not in text, secret


def test_the_request_line_never_loads_a_session_user(client, alice, django_assert_num_queries):
    """Outside the API routes `user` is the session's lazy user: the log line leaves it alone, so
    a request with a session cookie costs no query after its answer (nor a 500, the database down)."""
    client.force_login(alice)
    with django_assert_num_queries(0):
        assert client.get("/healthz").status_code == 200
