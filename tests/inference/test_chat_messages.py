"""POST /v1/chat/completions: every malformed message is a 400 naming it, before the upstream is paid."""

import pytest

from analytics.models import RequestLog

CHAT = "/v1/chat/completions"


@pytest.mark.parametrize(
    ("messages", "field"),
    [
        ([{"role": "wizard", "content": "hi"}], "role"),
        (["hi"], "non_field_errors"),
        ([{"role": "user", "content": "hi", "name": ""}], "name"),
        ([{"role": "user", "content": "hi", "name": 5}], "name"),
        ([{"role": "user"}], "content"),
        ([{"role": "user", "content": None}], "content"),
        ([{"role": "user", "content": 5}], "content"),
        ([{"role": "user", "content": ["a part that is not an object"]}], "content"),
        ([{"role": "assistant"}], "content"),
        ([{"role": "assistant", "content": None, "tool_calls": "x"}], "tool_calls"),
        ([{"role": "tool", "content": "42"}], "tool_call_id"),
    ],
)
def test_a_malformed_message_is_a_400_naming_it(client_for, alice, fake_openai, messages, field):
    response = client_for(alice).post(CHAT, {"model": "m", "messages": messages}, format="json")
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    # DRF keys a list's item errors by the item's index; the answer carries it as a string.
    assert field in error["details"]["messages"]["0"]
    assert fake_openai.completion_calls() == []
    assert RequestLog.objects.get(path=CHAT).status == 400


def test_the_second_message_is_named_by_its_index(client_for, alice, fake_openai):
    messages = [{"role": "user", "content": "fine"}, {"role": "wizard", "content": "hi"}]
    response = client_for(alice).post(CHAT, {"messages": messages}, format="json")
    assert response.status_code == 400
    assert set(response.json()["error"]["details"]["messages"]) == {"1"}


@pytest.mark.parametrize(
    "messages",
    [
        [{"role": "assistant", "content": None, "tool_calls": [{"id": "c1", "type": "function"}]}],
        [{"role": "tool", "content": "42", "tool_call_id": "c1"}],
        [{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
        [{"role": "user", "content": "hi", "name": "alice"}],
    ],
)
def test_well_formed_messages_of_every_kind_pass(client_for, alice, fake_openai, messages):
    response = client_for(alice).post(CHAT, {"messages": messages}, format="json")
    assert response.status_code == 200, response.content


def test_the_number_of_messages_and_tools_is_bounded_before_they_are_judged(client_for, alice, fake_openai):
    """A 5 MB body holds 150,000 short messages: validating them all took 24 s of CPU."""
    client = client_for(alice)
    many = [{"role": "user", "content": "x"}] * 2049
    response = client.post(CHAT, {"messages": many}, format="json")
    assert response.status_code == 400
    assert "messages" in response.json()["error"]["details"]
    tools = [{"type": "function", "function": {"name": f"f{n}"}} for n in range(129)]
    response = client.post(CHAT, {"messages": many[:1], "tools": tools}, format="json")
    assert response.status_code == 400
    assert "tools" in response.json()["error"]["details"]
    assert client.post(CHAT, {"messages": many[:2048]}, format="json").status_code == 200


def test_tool_calls_count_towards_the_prompt_limit(client_for, alice, fake_openai, settings):
    settings.GENERATION_MAX_PROMPT_CHARS = 100
    calls = [{"id": f"c{n}", "type": "function", "function": {"name": "f", "arguments": "{}"}} for n in range(20)]
    messages = [{"role": "assistant", "content": None, "tool_calls": calls}]
    response = client_for(alice).post(CHAT, {"messages": messages}, format="json")
    assert response.status_code == 400
    assert "messages" in response.json()["error"]["details"]


def test_no_messages_is_a_400(client_for, alice, fake_openai):
    response = client_for(alice).post(CHAT, {"messages": []}, format="json")
    assert response.status_code == 400
    assert "messages" in response.json()["error"]["details"]
    assert fake_openai.completion_calls() == []
