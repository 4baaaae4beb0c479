"""A client that leaves in the middle of a stream, over a real connection: the upstream call is
stopped, and the generation and the request log both record that it went away (499), with what
was generated until then and what that cost, charged to the key's budget."""

import time

import pytest
import requests

from accounts.services import api_key_create
from analytics.models import RequestLog
from inference.budgets import spend, token_bound
from inference.models import Generation

pytestmark = pytest.mark.usefixtures("committed_demo_models")


def _wait_for(find, seconds: float = 30.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if (found := find()) is not None:
            return found
        time.sleep(0.1)
    raise AssertionError("not recorded in time")


def test_a_client_that_leaves_mid_stream_is_recorded_as_gone(live_server, alice, fake_openai):
    fake_openai.chunk_delay = 0.3  # long enough for the client to be gone before the end
    created = api_key_create(
        user=alice, name="leaves", created_by=None, token_budget_tokens=100_000, token_budget_period="day"
    )
    key = created.key
    body = {"prompt": " ".join(["word"] * 40), "stream": True}
    with requests.post(
        f"{live_server.url}/api/v1/generations/", json=body, headers={"X-API-Key": key}, stream=True, timeout=30
    ) as response:
        assert response.status_code == 200
        first = next(response.iter_lines())
        assert first.startswith(b"event: delta")
    # The connection is closed here, a few words into a forty-word answer.
    generation = _wait_for(lambda: Generation.objects.filter(error_code="client_disconnected").first())
    assert generation.output.startswith("Echo:")
    assert len(generation.output.split()) < 40
    log = _wait_for(lambda: RequestLog.objects.filter(endpoint="v1:generation-list").first())
    assert (log.status, log.error_code) == (499, "client_disconnected")
    # the upstream was stopped: its next write found the stream closed, 40 words (12 s) early
    _wait_for(lambda: fake_openai.streams_cut or None)
    assert fake_openai.streams_cut == 1
    # what it cost: the prompt sent and the words received, estimated (no usage came), and charged
    assert generation.usage_estimated and generation.prompt_tokens > 0
    assert 0 < generation.completion_tokens <= token_bound(generation.output)
    used = generation.prompt_tokens + generation.completion_tokens
    assert (log.prompt_tokens, log.completion_tokens) == (generation.prompt_tokens, generation.completion_tokens)
    assert spend(created.api_key)["used"] == used
