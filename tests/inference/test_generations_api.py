"""POST /api/v1/generations/ through the real openai SDK against a local OpenAI-protocol server."""

import json

import pytest

from analytics.models import RequestLog
from inference.models import Generation

GENERATIONS = "/api/v1/generations/"


def generate(client, body):
    return client.post(GENERATIONS, body, format="json")


def read_events(response) -> list[tuple[str, dict]]:
    text = b"".join(response.streaming_content).decode()
    events = []
    for block in text.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.split("\n"))
        events.append((lines.get("event", "message"), json.loads(lines["data"])))
    return events


def test_no_backend_configured_is_503_naming_the_setting(client_for, alice, settings):
    settings.OPENAI_API_KEY = settings.OPENAI_BASE_URL = ""
    response = generate(client_for(alice), {"prompt": "hello"})
    assert response.status_code == 503
    error = response.json()["error"]
    assert error["code"] == "backend_not_configured"
    assert "OPENAI_API_KEY" in error["message"]


def test_a_generation(client_for, alice, fake_openai):
    response = generate(client_for(alice), {"prompt": "tell me a joke", "max_tokens": 50, "system": "be brief"})
    assert response.status_code == 201
    body = response.json()
    assert body["text"] == "Echo: tell me a joke"
    assert body["model"] == "fake-gpt"
    assert body["finish_reason"] == "stop"
    assert body["usage"] == {"prompt_tokens": 6, "completion_tokens": 5, "total_tokens": 11}
    assert body["cached"] is False

    (call,) = fake_openai.completion_calls()
    assert call["body"]["messages"] == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "tell me a joke"},
    ]
    assert call["body"]["max_tokens"] == 50

    recorded = Generation.objects.get(pk=body["id"])
    assert (recorded.user, recorded.route, recorded.model) == (alice, "generations", "fake-gpt")
    assert (recorded.prompt_tokens, recorded.completion_tokens, recorded.cached) == (6, 5, False)
    assert recorded.output == "Echo: tell me a joke"
    assert recorded.latency_ms > 0


def test_max_tokens_default_and_length_finish(client_for, alice, fake_openai, settings):
    settings.GENERATION_DEFAULT_MAX_TOKENS = 2
    body = generate(client_for(alice), {"prompt": "one two three four"}).json()
    assert fake_openai.completion_calls()[0]["body"]["max_tokens"] == 2
    assert body["finish_reason"] == "length"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "prompt"),
        ({"prompt": ""}, "prompt"),
        ({"prompt": "   "}, "prompt"),
        ({"prompt": 7}, "prompt"),
        ({"prompt": "hi", "max_tokens": 0}, "max_tokens"),
        ({"prompt": "hi", "max_tokens": 4097}, "max_tokens"),
        ({"prompt": "hi", "max_tokens": "many"}, "max_tokens"),
        ({"prompt": "hi", "temperature": 3}, "temperature"),
        ({"prompt": "hi", "temperature": "hot"}, "temperature"),
        ({"prompt": "hi", "stream": "yes please"}, "stream"),
        ({"prompt": "x" * 32_001}, "prompt"),
    ],
)
def test_bad_generation_input_is_400(client_for, alice, fake_openai, body, field):
    response = generate(client_for(alice), body)
    assert response.status_code == 400
    assert field in response.json()["error"]["details"]
    assert fake_openai.completion_calls() == []


@pytest.mark.parametrize(
    ("mode", "status", "code"),
    [("429", 503, "upstream_unavailable"), ("500", 502, "upstream_error"), ("malformed", 502, "upstream_error")],
)
def test_upstream_failures_map_to_the_contract_without_leaking(client_for, alice, fake_openai, mode, status, code):
    fake_openai.mode = mode
    response = generate(client_for(alice), {"prompt": "hi"})
    assert response.status_code == status
    assert response.json()["error"]["code"] == code
    text = response.content.decode()
    assert "sk-" not in text  # neither the upstream's words (with its key) nor ours
    assert Generation.objects.count() == 0


def test_upstream_timeout_is_504(client_for, alice, fake_openai, settings):
    settings.OPENAI_TIMEOUT_SECONDS = 0.3
    fake_openai.mode = "hold"  # no answer until the next test's reset lets it go
    response = generate(client_for(alice), {"prompt": "hi"})
    assert response.status_code == 504
    assert response.json()["error"]["code"] == "upstream_timeout"


def test_retries_are_explicit(client_for, alice, fake_openai, settings):
    settings.OPENAI_MAX_RETRIES = 2
    fake_openai.mode = "500"
    response = generate(client_for(alice), {"prompt": "hi"})
    assert response.status_code == 502
    assert len(fake_openai.completion_calls()) == 3


def test_temperature_zero_is_cached_and_the_hit_is_recorded(client_for, alice, fake_openai):
    client = client_for(alice)
    first = generate(client, {"prompt": "same", "temperature": 0}).json()
    second = generate(client, {"prompt": "same", "temperature": 0}).json()
    assert (first["cached"], second["cached"]) == (False, True)
    assert second["text"] == first["text"]
    assert len(fake_openai.completion_calls()) == 1
    assert list(Generation.objects.order_by("id").values_list("cached", flat=True)) == [False, True]


def test_other_temperatures_are_not_cached(client_for, alice, fake_openai):
    client = client_for(alice)
    for _ in range(2):
        assert generate(client, {"prompt": "same", "temperature": 0.7}).json()["cached"] is False
    generate(client, {"prompt": "same"})
    assert len(fake_openai.completion_calls()) == 3


def test_prompts_and_outputs_are_kept_out_when_store_texts_is_off(client_for, alice, fake_openai, settings):
    settings.STORE_TEXTS = False
    body = generate(client_for(alice), {"prompt": "private"}).json()
    recorded = Generation.objects.get(pk=body["id"])
    assert (recorded.prompt, recorded.output) == (None, None)
    assert recorded.completion_tokens == 2


def test_streaming_sends_deltas_then_done(client_for, alice, fake_openai):
    response = generate(client_for(alice), {"prompt": "stream me please", "stream": True})
    assert response.status_code == 200
    assert response["Content-Type"] == "text/event-stream"
    events = read_events(response)
    deltas = [data["text"] for name, data in events if name == "delta"]
    assert "".join(deltas) == "Echo: stream me please"
    assert len(deltas) > 1
    name, done = events[-1]
    assert name == "done"
    assert done["finish_reason"] == "stop"
    assert done["usage"]["completion_tokens"] == 4
    recorded = Generation.objects.get(pk=done["id"])
    assert recorded.stream is True
    assert recorded.output == "Echo: stream me please"
    assert recorded.completion_tokens == 4


def test_a_stream_that_cannot_start_is_a_plain_error(client_for, alice, fake_openai):
    fake_openai.mode = "500"
    response = generate(client_for(alice), {"prompt": "hi", "stream": True})
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "upstream_error"


def test_the_generation_route_has_its_own_rate(client_for, alice, fake_openai, settings):
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "generation": "2/d"}
    client = client_for(alice)
    assert [generate(client, {"prompt": "hi"}).status_code for _ in range(3)] == [201, 201, 429]
    assert client.get("/api/v1/models/").status_code == 200


def _chat_stream_lines(response) -> list[str]:
    text = b"".join(response.streaming_content).decode()
    return [block.removeprefix("data: ") for block in text.strip().split("\n\n")]


@pytest.mark.parametrize("mode", ["malformed", "cut-stream", "garbled-stream", "null-choices", "odd-types"])
def test_a_broken_upstream_stream_ends_with_an_error_and_is_recorded_as_one(client_for, alice, fake_openai, mode):
    """A body that is not a stream, a stream without a finish reason, a chunk that is not JSON:
    each ends with an error event instead of `done`, and both records say it failed."""
    fake_openai.mode = mode
    response = generate(client_for(alice), {"prompt": "stream me please", "stream": True})
    assert response.status_code == 200  # sent before the upstream's first chunk was read
    events = read_events(response)
    assert [name for name, _ in events if name in ("done", "error")] == ["error"]
    assert events[-1][1]["error"]["code"] == "upstream_error"
    generation = Generation.objects.get()
    assert generation.error_code == "upstream_error"
    log = RequestLog.objects.get(endpoint="v1:generation-list")
    assert (log.status, log.error_code) == (502, "upstream_error")


@pytest.mark.parametrize("mode", ["malformed", "cut-stream", "garbled-stream", "null-choices", "odd-types"])
def test_a_broken_stream_on_v1_ends_with_openais_error_event(client_for, alice, fake_openai, mode):
    fake_openai.mode = mode
    body = {"messages": [{"role": "user", "content": "stream me please"}], "stream": True}
    response = client_for(alice).post("/v1/chat/completions", body, format="json")
    lines = _chat_stream_lines(response)
    assert "[DONE]" not in lines
    last = json.loads(lines[-1])
    assert set(last) == {"error"} and last["error"]["code"] == "upstream_error"
    assert Generation.objects.get().error_code == "upstream_error"
    log = RequestLog.objects.get(path="/v1/chat/completions")
    assert (log.status, log.error_code) == (502, "upstream_error")


def test_a_whole_stream_is_logged_as_the_success_it_is(client_for, alice, fake_openai):
    events = read_events(generate(client_for(alice), {"prompt": "stream me please", "stream": True}))
    assert events[-1][0] == "done"
    log = RequestLog.objects.get(endpoint="v1:generation-list")
    assert (log.status, log.error_code) == (200, "")
    assert Generation.objects.get().error_code == ""


def test_a_completion_whose_choices_are_not_choices_is_502(client_for, alice, fake_openai):
    fake_openai.mode = "odd-completion"
    response = generate(client_for(alice), {"prompt": "hi"})
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "upstream_error"
