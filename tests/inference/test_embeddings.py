"""POST /v1/embeddings through the official openai SDK: OpenAI's shape, this service's keys,
limits, budgets, cache and records."""

from __future__ import annotations

import openai
import pytest

from accounts.models import ApiKey
from accounts.services import api_key_create
from analytics.models import RequestLog
from inference.models import Generation

pytestmark = pytest.mark.usefixtures("committed_demo_models")


@pytest.fixture
def sdk(live_server, alice, fake_openai):
    created = api_key_create(
        user=alice, name="embed", created_by=None, token_budget_tokens=1000, token_budget_period="day"
    )
    return openai.OpenAI(base_url=f"{live_server.url}/v1", api_key=created.key, max_retries=0, timeout=10)


def test_embeddings_of_a_text_and_a_batch(sdk, alice, fake_openai):
    one = sdk.embeddings.create(model="fake-embed", input="hello there")
    assert len(one.data) == 1 and len(one.data[0].embedding) == 8
    assert one.usage.prompt_tokens == 2
    batch = sdk.embeddings.create(model="fake-embed", input=["hello there", "good bye now"])
    assert [item.index for item in batch.data] == [0, 1]
    assert batch.data[0].embedding == one.data[0].embedding  # the same text, the same vector
    recorded = Generation.objects.filter(route="embeddings").order_by("id")
    assert [(g.prompt_tokens, g.completion_tokens, g.user) for g in recorded] == [(2, 0, alice), (5, 0, alice)]
    assert recorded[1].prompt == ["hello there", "good bye now"]
    logged = RequestLog.objects.filter(path="/v1/embeddings", status=200)
    assert sorted(logged.values_list("prompt_tokens", flat=True)) == [2, 5]


def test_the_same_embeddings_again_come_from_the_cache_and_cost_nothing(sdk, alice, fake_openai):
    for _ in range(3):
        sdk.embeddings.create(model="fake-embed", input=["a b c"])
    assert [c["path"] for c in fake_openai.calls] == ["/v1/embeddings"]
    from inference.budgets import spend

    assert spend(ApiKey.objects.get(user=alice))["used"] == 3
    assert list(Generation.objects.filter(route="embeddings").values_list("cached", flat=True)) == [
        False,
        True,
        True,
    ]


def test_bad_embedding_requests_are_400s_and_a_budget_refuses(sdk, live_server, alice):
    for bad in ([], [""], [1, 2], [["a"]], {"text": "a"}):
        with pytest.raises(openai.BadRequestError) as raised:
            sdk.embeddings.create(model="fake-embed", input=bad)
        assert raised.value.body["code"] == "validation_error"
    tight = api_key_create(user=alice, name="tight", created_by=None, token_budget_tokens=20, token_budget_period="day")
    small = openai.OpenAI(base_url=f"{live_server.url}/v1", api_key=tight.key, max_retries=0, timeout=10)
    small.embeddings.create(model="fake-embed", input="x" * 16)  # at most 16 tokens: it fits, and uses 1
    with pytest.raises(openai.RateLimitError) as raised:
        small.embeddings.create(model="fake-embed", input="y" * 20)  # 1 + 20 > 20
    assert raised.value.body["code"] == "budget_exceeded"
