"""The wrong JSON type is a 400 naming the field, on every input: never quietly coerced."""

import pytest

from inference.models import Generation, Prediction

PREDICTIONS = "/api/v1/predictions/"
GENERATIONS = "/api/v1/generations/"
CHAT = "/v1/chat/completions"
MESSAGES = [{"role": "user", "content": "hi"}]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"model": 5, "features": [1, 2, 3, 4]}, "model"),
        ({"model": True, "features": [1, 2, 3, 4]}, "model"),
        ({"version": "1", "features": [1, 2, 3, 4]}, "version"),
        ({"version": 1.0, "features": [1, 2, 3, 4]}, "version"),
        ({"version": True, "features": [1, 2, 3, 4]}, "version"),
        ({"version": 2**40, "features": [1, 2, 3, 4]}, "version"),
    ],
)
def test_prediction_fields_take_their_own_types_only(client_for, alice, body, field):
    response = client_for(alice).post(PREDICTIONS, body, format="json")
    assert response.status_code == 400, response.content
    assert field in response.json()["error"]["details"]
    assert not Prediction.objects.exists()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"prompt": "hi", "stream": "yes"}, "stream"),
        ({"prompt": "hi", "stream": 1}, "stream"),
        ({"prompt": "hi", "stream": 0}, "stream"),
        ({"prompt": "hi", "max_tokens": "5"}, "max_tokens"),
        ({"prompt": "hi", "max_tokens": 5.0}, "max_tokens"),
        ({"prompt": "hi", "temperature": "0.5"}, "temperature"),
        ({"prompt": "hi", "temperature": False}, "temperature"),
        ({"prompt": 42}, "prompt"),
    ],
)
def test_generation_fields_take_their_own_types_only(client_for, alice, fake_openai, body, field):
    response = client_for(alice).post(GENERATIONS, body, format="json")
    assert response.status_code == 400, response.content
    assert field in response.json()["error"]["details"]
    assert fake_openai.completion_calls() == []


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"stream": "yes"}, "stream"),
        ({"n": "2"}, "n"),
        ({"top_p": True}, "top_p"),
        ({"seed": "7"}, "seed"),
        ({"seed": 2**70}, "seed"),
        ({"user": 7}, "user"),
        ({"stop": 5}, "stop"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"tools": "none"}, "tools"),
        ({"response_format": "json"}, "response_format"),
        ({"stream_options": {"include_usage": "yes"}}, "stream_options"),
    ],
)
def test_chat_parameters_take_their_own_types_only(client_for, alice, fake_openai, extra, field):
    response = client_for(alice).post(CHAT, {"messages": MESSAGES, **extra}, format="json")
    assert response.status_code == 400, response.content
    assert field in response.json()["error"]["details"]
    assert fake_openai.completion_calls() == []


def test_null_optional_chat_parameters_mean_not_given(client_for, alice, fake_openai):
    nulls = ("model", "stop", "tools", "tool_choice", "response_format", "stream", "stream_options", "seed", "n")
    body = {"messages": MESSAGES, **dict.fromkeys(nulls)}
    response = client_for(alice).post(CHAT, body, format="json")
    assert response.status_code == 200, response.content
    (call,) = fake_openai.completion_calls()
    assert not (set(nulls) - {"model", "stream"}) & set(call["body"])
    assert call["body"]["model"] == "fake-gpt" and not call["body"].get("stream")
    assert Generation.objects.count() == 1


@pytest.mark.parametrize(
    ("body", "field"), [({"user": "alice", "name": 5}, "name"), ({"user": "alice", "name": "k", "rate": 100}, "rate")]
)
def test_api_key_fields_take_their_own_types_only(client_for, staff, alice, body, field):
    response = client_for(staff).post("/api/v1/api-keys/", body, format="json")
    assert response.status_code == 400, response.content
    assert field in response.json()["error"]["details"]


@pytest.mark.parametrize(
    ("message", "field"),
    [
        ({"role": "tool", "content": "42", "tool_call_id": " " + "c" * 100}, "tool_call_id"),
        ({"role": "user", "content": "hi", "name": "n" * 64 + " "}, "name"),
    ],
)
def test_a_string_is_measured_as_sent_not_as_trimmed(client_for, alice, fake_openai, message, field):
    """The OpenAPI document's maxLength is the string's as sent: whitespace at its ends counts
    (found by tests/project/test_contract_fuzz.py: DRF measured after trimming)."""
    response = client_for(alice).post(CHAT, {"messages": [message]}, format="json")
    assert response.status_code == 400, response.content
    assert field in response.json()["error"]["details"]["messages"]["0"]
    assert fake_openai.completion_calls() == []
    within = {**message, field: message[field][:-1]}
    assert client_for(alice).post(CHAT, {"messages": [within]}, format="json").status_code == 200


@pytest.mark.parametrize("model", [" iris", "iris ", "iris\n"])
def test_a_model_name_is_judged_as_sent(client_for, alice, model):
    """Not trimmed into a name that exists: the document's pattern refuses it, and so do we."""
    response = client_for(alice).post(PREDICTIONS, {"model": model, "features": [1, 2, 3, 4]}, format="json")
    assert response.status_code in (400, 404), response.content
    assert not Prediction.objects.exists()
    response = client_for(alice).get(PREDICTIONS, {"model": model})
    assert response.status_code == 400, response.content
    assert "model" in response.json()["error"]["details"]


@pytest.mark.parametrize("rate", [" 5/m", "5/m\n", "\u0665/m"])
def test_a_rate_is_judged_as_sent(client_for, staff, alice, rate):
    """Not trimmed, matched whole, in ASCII digits: as the document's pattern says."""
    body = {"user": alice.username, "name": "spaced", "rate": rate}
    response = client_for(staff).post("/api/v1/api-keys/", body, format="json")
    assert response.status_code == 400, response.content
    assert "rate" in response.json()["error"]["details"]
