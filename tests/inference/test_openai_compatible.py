"""The official openai SDK as a client of this service's /v1 routes, with this service's API
keys, proxied to a local OpenAI-protocol upstream."""

import openai
import pytest

from accounts.services import api_key_create
from analytics.models import RequestLog
from inference.models import Generation

pytestmark = pytest.mark.usefixtures("committed_demo_models")


@pytest.fixture
def sdk(live_server, alice, fake_openai):
    created = api_key_create(user=alice, name="sdk", created_by=None)
    client = openai.OpenAI(base_url=f"{live_server.url}/v1", api_key=created.key, max_retries=0, timeout=10)
    client.key_id = created.api_key.pk
    return client


def test_models_are_the_upstreams(sdk):
    assert [model.id for model in sdk.models.list()] == ["fake-gpt"]


def test_the_model_list_is_asked_of_the_upstream_once_per_cache_period(sdk, fake_openai, settings):
    for _ in range(3):
        assert [model.id for model in sdk.models.list()] == ["fake-gpt"]
    assert [c["path"] for c in fake_openai.calls] == ["/v1/models"]
    settings.MODELS_CACHE_SECONDS = 0
    from django.core.cache import cache

    cache.clear()
    sdk.models.list()
    sdk.models.list()
    assert [c["path"] for c in fake_openai.calls] == ["/v1/models"] * 3


def test_chat_completion(sdk, alice, fake_openai):
    completion = sdk.chat.completions.create(
        model="fake-gpt", messages=[{"role": "user", "content": "hello there"}], max_tokens=20
    )
    assert completion.choices[0].message.content == "Echo: hello there"
    assert completion.usage.total_tokens == 5
    # The upstream saw our key for it, not the client's key for us.
    (call,) = fake_openai.completion_calls()
    assert call["headers"]["authorization"] == "Bearer sk-test-upstream-key"

    recorded = Generation.objects.get()
    assert (recorded.route, recorded.user, recorded.completion_tokens) == ("chat.completions", alice, 3)
    log = RequestLog.objects.filter(path="/v1/chat/completions").get()
    assert (log.status, log.auth_method, log.api_key_id) == (200, "api_key", sdk.key_id)


def test_streaming_chat_completion(sdk):
    stream = sdk.chat.completions.create(
        model="fake-gpt", messages=[{"role": "user", "content": "stream this"}], stream=True
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Echo: stream this"
    assert all(c.usage is None for c in chunks)  # not asked for, not sent
    recorded = Generation.objects.get()
    assert (recorded.stream, recorded.output, recorded.completion_tokens) == (True, "Echo: stream this", 3)


def test_streaming_with_usage_when_asked(sdk):
    stream = sdk.chat.completions.create(
        model="fake-gpt",
        messages=[{"role": "user", "content": "count me"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert chunks[-1].usage.completion_tokens == 3


def test_a_bad_key_is_an_authentication_error(live_server, fake_openai):
    client = openai.OpenAI(base_url=f"{live_server.url}/v1", api_key="mlsk_nope", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        client.models.list()


def test_rate_limits_apply(sdk, settings):
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "generation": "1/d"}
    sdk.chat.completions.create(model="fake-gpt", messages=[{"role": "user", "content": "a"}])
    with pytest.raises(openai.RateLimitError) as caught:
        sdk.chat.completions.create(model="fake-gpt", messages=[{"role": "user", "content": "b"}])
    assert caught.value.response.headers["Retry-After"]


def test_upstream_failure_reaches_the_sdk_in_our_words(sdk, fake_openai):
    fake_openai.mode = "500"
    with pytest.raises(openai.APIStatusError) as caught:
        sdk.chat.completions.create(model="fake-gpt", messages=[{"role": "user", "content": "a"}])
    assert caught.value.status_code == 502
    assert "sk-" not in caught.value.response.text


def test_bad_input_is_a_400_the_sdk_understands(sdk):
    with pytest.raises(openai.BadRequestError) as caught:
        sdk.chat.completions.create(model="fake-gpt", messages=[])
    assert "messages" in caught.value.response.json()["error"]["details"]


def test_deterministic_requests_are_cached(sdk, fake_openai):
    for _ in range(2):
        completion = sdk.chat.completions.create(
            model="fake-gpt", messages=[{"role": "user", "content": "same"}], temperature=0
        )
        assert completion.choices[0].message.content == "Echo: same"
    assert len(fake_openai.completion_calls()) == 1
    assert list(Generation.objects.order_by("id").values_list("cached", flat=True)) == [False, True]


def test_openais_own_user_parameter_is_cached_as_a_parameter(sdk, fake_openai):
    """`user` (the end user, as OpenAI's API has it) is one more parameter of the cached answer,
    not the owner of it (found by tests/project/test_contract_fuzz.py: it was a 500)."""
    for end_user in ("end-user-1", "end-user-1", "end-user-2"):
        sdk.chat.completions.create(
            model="fake-gpt", messages=[{"role": "user", "content": "same"}], temperature=0, user=end_user
        )
    assert len(fake_openai.completion_calls()) == 2
    assert list(Generation.objects.order_by("id").values_list("cached", flat=True)) == [False, True, False]


def test_the_sdk_does_not_retry_what_a_retry_cannot_fix(live_server, alice, settings):
    """A 503 for a missing backend is no outage: the answer says x-should-retry: false, and the
    SDK (two retries allowed) asks once. Both routes say it in the same words."""
    settings.OPENAI_API_KEY = settings.OPENAI_BASE_URL = ""
    created = api_key_create(user=alice, name="sdk", created_by=None)
    client = openai.OpenAI(base_url=f"{live_server.url}/v1", api_key=created.key, max_retries=2, timeout=10)
    messages = []
    with pytest.raises(openai.InternalServerError) as models:
        client.models.list()
    messages.append(models.value.body["message"])
    with pytest.raises(openai.InternalServerError) as chat:
        client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
    messages.append(chat.value.body["message"])
    assert chat.value.response.headers["x-should-retry"] == "false"
    assert RequestLog.objects.filter(path="/v1/models").count() == 1
    assert RequestLog.objects.filter(path="/v1/chat/completions").count() == 1
    assert messages[0] == messages[1]
    assert "OPENAI_API_KEY" in messages[0] and "OPENAI_BASE_URL" in messages[0]
