"""The local sentiment backend: VADER's own answers, at a cost bounded whatever the text holds.

What a call costs in seconds is measured by `make bench-sentiment` (README); here, what makes it
bounded is checked without a clock: VADER reads at most SENTIMENT_MAX_WORDS words, and each word's
checks see a window of six words, never the whole text again.
"""

import random

import pytest
from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

from inference import sentiment

SENTIMENT = "/api/v1/sentiment/"
LIBRARY = SentimentIntensityAnalyzer()


def _random_texts(count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    vocabulary = [
        *("but", "BUT", "good", "bad", "not", "never", "very", "kind", "of", "sort", "so", "this", "no", "or"),
        *("least", "at", "without", "doubt", "the", "bomb", "yeah", "right", "LOVE", "hate", ":)", ":(", "!!!"),
        *("😀", "😹", "🙁", "x", "great!", "Terrible?", "kinda", "nor", "ain't"),
    ]
    return [" ".join(rng.choice(vocabulary) for _ in range(rng.randint(1, 120))) for _ in range(count)]


def test_the_bounded_analyser_gives_vaders_own_answers():
    """Linear checks and the n log n "but" rule change the cost, never the answer."""
    for text in _random_texts(1500, seed=3):
        assert sentiment._vader().polarity_scores(text) == LIBRARY.polarity_scores(text), text


def test_a_text_within_the_word_cap_is_read_whole(settings):
    text = "I love it 😀 but the ending was bad " * 20
    assert len(sentiment.vader_words(text).split()) < settings.SENTIMENT_MAX_WORDS
    assert sentiment.vader_words(text) == text.strip().replace("😀", "grinning face")


@pytest.mark.parametrize("text", ["😹" * 5000, "good but " * 600, "x good " * 1200])
def test_vader_reads_at_most_the_word_cap_and_a_window_per_check(monkeypatch, settings, text):
    """5,000 emoji are 30,000 words once described; VADER gets SENTIMENT_MAX_WORDS of them, and
    its per-word checks get six words each, not the whole list (which made it quadratic)."""
    valence_calls, windows, idiom_windows = 0, [], []
    real_valence = SentimentIntensityAnalyzer.sentiment_valence
    real_negation = SentimentIntensityAnalyzer._negation_check
    real_idioms = SentimentIntensityAnalyzer._special_idioms_check

    def counting_valence(self, *args):
        nonlocal valence_calls
        valence_calls += 1
        return real_valence(self, *args)

    def window(valence, words, start_i, i):
        windows.append(len(words))
        return real_negation(valence, words, start_i, i)

    monkeypatch.setattr(SentimentIntensityAnalyzer, "sentiment_valence", counting_valence)

    def idiom_window(valence, words, i):
        idiom_windows.append(len(words))
        return real_idioms(valence, words, i)

    monkeypatch.setattr(SentimentIntensityAnalyzer, "_negation_check", staticmethod(window))
    monkeypatch.setattr(SentimentIntensityAnalyzer, "_special_idioms_check", staticmethod(idiom_window))
    result = sentiment.analyse_local([text]).results[0]
    assert result.sentiment in {"positive", "negative", "neutral"}
    assert valence_calls <= settings.SENTIMENT_MAX_WORDS
    assert windows and idiom_windows  # the checks ran, on hundreds of words
    assert max(windows) <= 6 and max(idiom_windows) <= 6


def test_the_cap_is_a_setting(settings):
    settings.SENTIMENT_MAX_WORDS = 5
    assert sentiment.vader_words("one two three four five six seven") == "one two three four five"


def test_a_text_of_emoji_at_the_size_limit_is_answered(client_for, alice):
    response = client_for(alice).post(SENTIMENT, {"text": "😀" * 5000}, format="json")
    assert response.status_code == 201
    assert response.json()["sentiment"] == "positive"
