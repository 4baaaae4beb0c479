"""POST /api/v1/sentiment/: the local backend offline, OpenAI through the real SDK against a
local server, the hybrid fallback, the cache, and what is recorded."""

import pytest

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
    openai_sentiment.mode, openai_sentiment.delay = "slow", 1.0
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
    fake_openai.mode, fake_openai.delay = "slow", 1.0
    assert analyse(client, {"text": "I quite love it"}).json()["backend"] == "local"


def test_hybrid_fallback_answers_are_not_cached_as_openai_answers(client_for, alice, fake_openai, settings):
    settings.SENTIMENT_BACKEND = "hybrid"
    client = client_for(alice)
    fake_openai.mode = "500"
    analyse(client, {"text": "I love it"})
    fake_openai.mode = "ok"
    again = analyse(client, {"text": "I love it"}).json()
    assert (again["backend"], again["cached"]) == ("openai", False)
