"""POST /api/v1/sentiment/: the local backend offline, OpenAI through the real SDK against a
local server, the hybrid fallback, the cache, and what is recorded."""

import json

import pytest

from accounts.services import api_key_create, api_key_limits_set
from analytics.models import RequestLog
from inference import budgets, sentiment
from inference.models import SentimentCall

SENTIMENT = "/api/v1/sentiment/"


def analyse(client, body):
    return client.post(SENTIMENT, body, format="json")


# --- local (the default) -----------------------------------------------------------


def test_local_backend_needs_no_configuration_or_network(client_for, alice, settings):
    settings.OPENAI_API_KEY = settings.OPENAI_BASE_URL = ""
    response = analyse(client_for(alice), {"text": "I absolutely love this, it is wonderful!"})
    assert response.status_code == 201
    body = response.json()
    assert body["sentiment"] == "positive"
    assert body["backend"] == "local"
    assert body["cached"] is False
    assert set(body["scores"]) == {"positive", "negative", "neutral"}
    assert sum(body["scores"].values()) == pytest.approx(1.0, abs=0.01)
    assert isinstance(body["id"], int)


def test_labels_and_confidence_follow_the_text(client_for, alice):
    client = client_for(alice)
    strong = analyse(client, {"text": "This is the best, most wonderful, amazing day of my life!!!"}).json()
    mild = analyse(client, {"text": "It is fine, I guess good"}).json()
    negative = analyse(client, {"text": "This is terrible, I hate it."}).json()
    neutral = analyse(client, {"text": "The train leaves at noon."}).json()
    assert (strong["sentiment"], negative["sentiment"], neutral["sentiment"]) == ("positive", "negative", "neutral")
    # A real confidence: stronger wording, higher confidence; never a constant.
    assert strong["confidence"] > mild["confidence"]
    assert len({strong["confidence"], mild["confidence"], negative["confidence"]}) == 3
    assert all(0 <= r["confidence"] <= 1 for r in (strong, mild, negative, neutral))


def test_a_batch_answers_in_order(client_for, alice):
    response = analyse(client_for(alice), {"texts": ["I love it", "I hate it", "It is a chair"]})
    assert response.status_code == 201
    body = response.json()
    assert [r["sentiment"] for r in body["results"]] == ["positive", "negative", "neutral"]
    assert isinstance(body["id"], int)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"text": ""}, "text"),
        ({"text": "   \n\t"}, "text"),
        ({"text": 42}, "text"),
        ({"text": None}, "text"),
        ({"text": ["a"]}, "text"),
        ({"text": "x" * 5001}, "text"),
        ({}, "text"),
        ({"text": "a", "texts": ["b"]}, "texts"),
        ({"texts": []}, "texts"),
        ({"texts": "not a list"}, "texts"),
        ({"texts": ["fine", ""]}, "texts"),
        ({"texts": ["fine", 3]}, "texts"),
    ],
)
def test_bad_texts_are_400(client_for, alice, body, field):
    response = analyse(client_for(alice), body)
    assert response.status_code == 400
    assert field in response.json()["error"]["details"]
    assert SentimentCall.objects.count() == 0


def test_too_many_texts_is_413(client_for, alice, settings):
    settings.SENTIMENT_MAX_TEXTS = 3
    assert analyse(client_for(alice), {"texts": ["a"] * 4}).status_code == 413


def test_calls_are_recorded_with_or_without_their_texts(client_for, alice, settings):
    client = client_for(alice)
    first = analyse(client, {"text": "I love it"}).json()
    call = SentimentCall.objects.get(pk=first["id"])
    assert (call.user, call.backend, call.model, call.n_texts) == (alice, "local", "vader", 1)
    assert call.texts == ["I love it"]
    assert call.latency_ms > 0

    settings.STORE_TEXTS = False
    second = analyse(client, {"text": "a secret diary entry"}).json()
    assert SentimentCall.objects.get(pk=second["id"]).texts is None


def test_identical_texts_come_from_the_cache(client_for, alice):
    client = client_for(alice)
    first = analyse(client, {"text": "What a lovely day"}).json()
    second = analyse(client, {"text": "What a lovely day"}).json()
    assert (first["cached"], second["cached"]) == (False, True)
    assert first["scores"] == second["scores"]
    assert SentimentCall.objects.filter(cached=True).count() == 1


# --- openai, through the real SDK against a local server ----------------------------


@pytest.fixture
def openai_sentiment(fake_openai, settings):
    settings.SENTIMENT_BACKEND = "openai"
    return fake_openai


def test_openai_backend_asks_for_json_and_validates_it(client_for, alice, openai_sentiment):
    body = analyse(client_for(alice), {"text": "I love this great phone"}).json()
    assert body["sentiment"] == "positive"
    assert body["backend"] == "openai"
    assert body["confidence"] == pytest.approx(body["scores"]["positive"], abs=1e-3)
    (call,) = openai_sentiment.completion_calls()
    assert call["body"]["response_format"] == {"type": "json_object"}
    assert call["body"]["model"] == "fake-gpt"
    assert call["headers"]["authorization"] == "Bearer sk-test-upstream-key"
    recorded = SentimentCall.objects.get(pk=body["id"])
    assert recorded.backend == "openai"
    assert recorded.prompt_tokens > 0


def test_openai_cache_hit_makes_no_upstream_request(client_for, alice, openai_sentiment):
    client = client_for(alice)
    analyse(client, {"text": "I hate this broken phone"})
    second = analyse(client, {"text": "I hate this broken phone"}).json()
    assert second["cached"] is True
    assert second["sentiment"] == "negative"
    assert len(openai_sentiment.completion_calls()) == 1


@pytest.mark.parametrize(
    ("mode", "status", "code"),
    [
        ("prose", 502, "upstream_error"),
        ("malformed", 502, "upstream_error"),
        ("500", 502, "upstream_error"),
        ("429", 503, "upstream_unavailable"),
    ],
)
def test_openai_failures_map_to_the_contract(client_for, alice, openai_sentiment, mode, status, code):
    openai_sentiment.mode = mode
    response = analyse(client_for(alice), {"text": "I love it"})
    assert response.status_code == status
    error = response.json()["error"]
    assert error["code"] == code
    assert "sk-" not in response.content.decode()
    assert SentimentCall.objects.count() == 0


def test_openai_timeout_is_504(client_for, alice, openai_sentiment, settings):
    settings.OPENAI_TIMEOUT_SECONDS = 0.3
    openai_sentiment.mode = "hold"  # no answer until the next test's reset lets it go
    response = analyse(client_for(alice), {"text": "I love it"})
    assert response.status_code == 504
    assert response.json()["error"]["code"] == "upstream_timeout"


def test_hybrid_falls_back_to_local_and_says_so(client_for, alice, fake_openai, settings):
    settings.SENTIMENT_BACKEND = "hybrid"
    client = client_for(alice)
    healthy = analyse(client, {"text": "I love it"}).json()
    assert healthy["backend"] == "openai"

    fake_openai.mode = "500"
    fallback = analyse(client, {"text": "I really love it"}).json()
    assert fallback["backend"] == "local"
    assert fallback["sentiment"] == "positive"
    assert SentimentCall.objects.get(pk=fallback["id"]).backend == "local"

    settings.OPENAI_TIMEOUT_SECONDS = 0.3
    fake_openai.mode = "hold"
    assert analyse(client, {"text": "I quite love it"}).json()["backend"] == "local"


def test_hybrid_fallback_answers_are_not_cached_as_openai_answers(client_for, alice, fake_openai, settings):
    settings.SENTIMENT_BACKEND = "hybrid"
    client = client_for(alice)
    fake_openai.mode = "500"
    analyse(client, {"text": "I love it"})
    fake_openai.mode = "ok"
    again = analyse(client, {"text": "I love it"}).json()
    assert (again["backend"], again["cached"]) == ("openai", False)


# --- openai batches: one upstream request, validated per text ------------------------

BATCH = ["I love this great phone", "I hate this broken phone", "It is a phone", "Good and happy", "Awful"]
EXPECTED = ["positive", "negative", "neutral", "positive", "negative"]


def _sent_texts(call) -> list[str]:
    return json.loads(call["body"]["messages"][-1]["content"])["texts"]


def test_an_openai_batch_is_one_upstream_request_validated_per_text(client_for, alice, openai_sentiment):
    response = analyse(client_for(alice), {"texts": BATCH})
    assert response.status_code == 201
    results = response.json()["results"]
    assert [r["sentiment"] for r in results] == EXPECTED
    assert all(r["backend"] == "openai" and r["cached"] is False for r in results)
    (call,) = openai_sentiment.completion_calls()
    assert _sent_texts(call) == BATCH
    assert call["body"]["max_tokens"] == sentiment.REPLY_TOKENS_OVERHEAD + sentiment.REPLY_TOKENS_PER_TEXT * 5
    recorded = SentimentCall.objects.get(pk=response.json()["id"])
    assert recorded.prompt_tokens > 0 and recorded.completion_tokens > 0
    log = RequestLog.objects.get(endpoint="v1:sentiment-list")
    assert (log.model, log.prompt_tokens, log.completion_tokens) == (
        "fake-gpt",
        recorded.prompt_tokens,
        recorded.completion_tokens,
    )


def test_only_the_texts_the_cache_lacks_go_upstream(client_for, alice, openai_sentiment):
    client = client_for(alice)
    analyse(client, {"texts": BATCH[:2]})
    results = analyse(client, {"texts": BATCH}).json()["results"]
    assert [r["cached"] for r in results] == [True, True, False, False, False]
    assert [r["sentiment"] for r in results] == EXPECTED
    first, second = openai_sentiment.completion_calls()
    assert (_sent_texts(first), _sent_texts(second)) == (BATCH[:2], BATCH[2:])


def test_a_batch_beyond_the_models_reply_limit_goes_in_as_few_requests_as_fit(
    client_for, alice, openai_sentiment, settings
):
    # room in the reply for the results of three texts
    settings.SENTIMENT_OPENAI_MAX_OUTPUT_TOKENS = sentiment.REPLY_TOKENS_OVERHEAD + 3 * sentiment.REPLY_TOKENS_PER_TEXT
    texts = [f"{word} text number {i}" for i, word in enumerate(["good", "bad", "fine"] * 3)][:7]
    results = analyse(client_for(alice), {"texts": texts}).json()["results"]
    assert [r["sentiment"] for r in results] == ["positive", "negative", "neutral"] * 2 + ["positive"]
    calls = openai_sentiment.completion_calls()
    assert [_sent_texts(c) for c in calls] == [texts[0:3], texts[3:6], texts[6:7]]
    assert all(c["body"]["max_tokens"] <= settings.SENTIMENT_OPENAI_MAX_OUTPUT_TOKENS for c in calls)


def test_a_batch_beyond_the_models_context_is_split_by_its_prompts_bound(client_for, alice, openai_sentiment, settings):
    long_texts = ["good " * 400, "bad. " * 400, "fine " * 400]  # 2,000 bytes each
    one = budgets.prompt_token_bound(sentiment._request(long_texts[:1]))
    # one text and its reply fit, two do not
    settings.SENTIMENT_OPENAI_CONTEXT_TOKENS = one + sentiment.REPLY_TOKENS_PER_TEXT + 1500
    results = analyse(client_for(alice), {"texts": long_texts}).json()["results"]
    assert [r["sentiment"] for r in results] == ["positive", "negative", "neutral"]
    calls = openai_sentiment.completion_calls()
    assert [len(_sent_texts(c)) for c in calls] == [1, 1, 1]
    for call in calls:
        body = call["body"]
        assert budgets.prompt_token_bound(body) + body["max_tokens"] <= settings.SENTIMENT_OPENAI_CONTEXT_TOKENS


@pytest.mark.parametrize("fault", ["drop-last", "bad-last", "duplicate-first"])
def test_a_text_without_a_valid_result_is_asked_for_again(client_for, alice, openai_sentiment, fault):
    openai_sentiment.sentiment_fault, openai_sentiment.sentiment_faults = fault, 1
    response = analyse(client_for(alice), {"texts": BATCH})
    assert response.status_code == 201
    assert [r["sentiment"] for r in response.json()["results"]] == EXPECTED
    first, second = openai_sentiment.completion_calls()
    assert (_sent_texts(first), _sent_texts(second)) == (BATCH, BATCH[-1:])
    recorded = SentimentCall.objects.get()
    # both requests were spent, and are counted
    assert recorded.prompt_tokens == sum(
        len(str(m["content"]).split()) for c in (first, second) for m in c["body"]["messages"]
    )


def test_a_call_given_up_on_cannot_take_the_next_tests_fault(client_for, alice, openai_sentiment, settings):
    # A timed-out call leaves the fake upstream asleep on it; the next test's reset waits for it,
    # or it would wake inside that test and take the fault meant for that test's batch.
    settings.OPENAI_TIMEOUT_SECONDS = 0.3
    openai_sentiment.mode, openai_sentiment.delay = "slow", 1.0
    assert analyse(client_for(alice), {"texts": BATCH[:1]}).status_code == 504
    openai_sentiment.reset()  # what the fake_openai fixture does before each test
    assert openai_sentiment.in_flight == 0  # it waited: the given-up call is no longer asleep in it
    openai_sentiment.sentiment_fault, openai_sentiment.sentiment_faults = "bad-last", 1
    response = analyse(client_for(alice), {"texts": BATCH[1:]})
    assert response.status_code == 201
    assert len(openai_sentiment.completion_calls()) == 2  # the fault was this batch's, and it was asked again


def test_a_text_still_without_a_result_is_502_naming_it_and_nothing_is_stored(client_for, alice, openai_sentiment):
    openai_sentiment.sentiment_fault, openai_sentiment.sentiment_faults = "bad-last", 2
    response = analyse(client_for(alice), {"texts": BATCH})
    assert response.status_code == 502
    error = response.json()["error"]
    assert error["code"] == "upstream_error" and "text 4" in error["message"]
    assert SentimentCall.objects.count() == 0
    assert len(openai_sentiment.completion_calls()) == 2


def test_a_keys_token_budget_holds_sentiment_upstream_calls_too(client_for, alice, openai_sentiment, staff):
    key = api_key_create(
        user=alice, name="budgeted", created_by=None, token_budget_tokens=100_000, token_budget_period="day"
    )
    client = client_for(None)
    auth = {"HTTP_AUTHORIZATION": f"Bearer {key.key}"}
    response = client.post(SENTIMENT, {"texts": BATCH}, format="json", **auth)
    assert response.status_code == 201
    call = SentimentCall.objects.get()
    spend = client_for(staff).get(f"/api/v1/api-keys/{key.api_key.pk}/").json()["spend"]
    assert spend["used"] == call.prompt_tokens + call.completion_tokens > 0
    # a batch whose worst case is more than what is left is refused before the upstream is asked
    texts = [f"new text {i}" for i in range(5)]
    request = sentiment._request(texts)
    worst = budgets.prompt_token_bound(request) + request["max_tokens"]
    api_key_limits_set(api_key=key.api_key, token_budget_tokens=spend["used"] + worst - 1)
    refused = client.post(SENTIMENT, {"texts": texts}, format="json", **auth)
    assert refused.status_code == 429 and refused.json()["error"]["code"] == "budget_exceeded"
    assert len(openai_sentiment.completion_calls()) == 1


def test_tokens_spent_before_a_failure_are_recorded(client_for, alice, openai_sentiment):
    openai_sentiment.sentiment_fault, openai_sentiment.sentiment_faults = "bad-last", 2
    key = api_key_create(user=alice, name="k", created_by=None, token_budget_tokens=100_000, token_budget_period="day")
    response = client_for(None).post(SENTIMENT, {"texts": BATCH}, format="json", HTTP_AUTHORIZATION=f"Bearer {key.key}")
    assert response.status_code == 502
    calls = openai_sentiment.completion_calls()
    sent = sum(len(str(m["content"]).split()) for c in calls for m in c["body"]["messages"])
    log = RequestLog.objects.get(endpoint="v1:sentiment-list")
    assert (log.status, log.model, log.prompt_tokens) == (502, "fake-gpt", sent)
    assert log.completion_tokens > 0 and log.cost == 0 and log.unpriced_tokens == sent + log.completion_tokens
    assert budgets.spend(key.api_key)["used"] == log.prompt_tokens + log.completion_tokens


def test_hybrid_records_the_model_that_answered_and_caches_its_answers(client_for, alice, fake_openai, settings):
    settings.SENTIMENT_BACKEND = "hybrid"
    client = client_for(alice)
    first = analyse(client, {"text": "I love it"}).json()
    assert (first["backend"], first["cached"]) == ("openai", False)
    assert SentimentCall.objects.get(pk=first["id"]).model == "fake-gpt"
    assert RequestLog.objects.get(endpoint="v1:sentiment-list").model == "fake-gpt"
    assert analyse(client, {"text": "I love it"}).json()["cached"] is True
    assert len(fake_openai.completion_calls()) == 1


def test_hybrid_answers_locally_when_the_keys_limits_refuse_the_upstream(client_for, alice, fake_openai, settings):
    settings.SENTIMENT_BACKEND = "hybrid"
    request = sentiment._request(["I love it"])
    worst = budgets.prompt_token_bound(request) + request["max_tokens"]
    key = api_key_create(user=alice, name="k", created_by=None, tokens_per_minute=worst - 1)
    response = client_for(None).post(
        SENTIMENT, {"text": "I love it"}, format="json", HTTP_AUTHORIZATION=f"Bearer {key.key}"
    )
    assert response.status_code == 201
    assert (response.json()["backend"], response.json()["sentiment"]) == ("local", "positive")
    assert fake_openai.completion_calls() == []
    log = RequestLog.objects.get(endpoint="v1:sentiment-list")
    assert (log.model, log.prompt_tokens) == ("", 0)


def test_with_the_openai_backend_a_text_over_the_keys_whole_limit_is_400_naming_texts(
    client_for, alice, openai_sentiment
):
    key = api_key_create(user=alice, name="k", created_by=None, tokens_per_minute=200)
    response = client_for(None).post(
        SENTIMENT, {"text": "good " * 100}, format="json", HTTP_AUTHORIZATION=f"Bearer {key.key}"
    )
    assert response.status_code == 400
    assert "texts" in response.json()["error"]["details"]
    assert openai_sentiment.completion_calls() == []


def test_a_batch_is_split_to_fit_the_keys_tokens_per_minute(client_for, alice, openai_sentiment):
    texts = [f"good text {i}" for i in range(6)]
    whole = sentiment._request(texts)
    # one token short of what the whole batch's worst case needs
    limit = budgets.prompt_token_bound(whole) + whole["max_tokens"] - 1
    key = api_key_create(user=alice, name="k", created_by=None, tokens_per_minute=limit)
    response = client_for(None).post(SENTIMENT, {"texts": texts}, format="json", HTTP_AUTHORIZATION=f"Bearer {key.key}")
    # five texts fit the limit; the sixth goes next, within what the first request really used
    assert response.status_code == 201, response.content
    assert [len(_sent_texts(c)) for c in openai_sentiment.completion_calls()] == [5, 1]


def test_the_largest_batch_goes_in_as_few_requests_as_the_readme_says(settings):
    # 100 texts of 5,000 characters (SENTIMENT_MAX_TEXTS of SENTIMENT_MAX_CHARS), with the defaults
    words = [
        "the",
        "service",
        "was",
        "good",
        "but",
        "the",
        "delivery",
        "took",
        "far",
        "too",
        "long",
        "and",
        "nobody",
        "answered",
        "when",
        "I",
        "called",
    ]
    english = [" ".join(words[(i + j) % len(words)] for j in range(1000))[:5000] for i in range(100)]
    cjk = ["感" * 5000] * 100
    settings.SENTIMENT_OPENAI_MODEL = "gpt-4o-mini"
    assert [len(group) for group in sentiment.plan_requests(english)] == [100]
    assert [len(group) for group in sentiment.plan_requests(cjk)] == [25, 25, 25, 25]
    settings.SENTIMENT_OPENAI_MODEL = "llama3.2"  # no tokenizer known here: the byte bound
    assert len(sentiment.plan_requests(english)) == 5
