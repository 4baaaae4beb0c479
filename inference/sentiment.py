"""Sentiment backends: local (VADER, offline), openai (any OpenAI-compatible server), hybrid.

Every backend answers the same thing for each text: a label, scores for the three labels, and
a confidence derived from those scores — never a constant.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import asdict, dataclass
from functools import cache

from django.conf import settings
from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

from inference import llm
from project.errors import AppError, BackendNotConfigured, UpstreamError, UpstreamTimeout, UpstreamUnavailable

logger = logging.getLogger(__name__)

LABELS = ("positive", "negative", "neutral")


@dataclass(frozen=True)
class SentimentResult:
    sentiment: str
    confidence: float
    scores: dict[str, float]
    backend: str

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class SentimentBatch:
    results: list[SentimentResult]
    backend: str
    model: str
    usage: llm.Usage


# --- local ----------------------------------------------------------------------------

# VADER's own thresholds on its compound score (Hutto & Gilbert, 2014).
_VADER_THRESHOLD = 0.05


@cache
def _vader() -> SentimentIntensityAnalyzer:
    return SentimentIntensityAnalyzer()  # reads the lexicon that ships in the package, once


def _local_one(text: str) -> SentimentResult:
    polarity = _vader().polarity_scores(text)
    compound = polarity["compound"]
    if compound >= _VADER_THRESHOLD:
        label = "positive"
    elif compound <= -_VADER_THRESHOLD:
        label = "negative"
    else:
        label = "neutral"
    # Confidence from the compound score: how far it is into its label's range, so a text
    # at the edge of positive and neutral is ~0.5 and a strongly worded one approaches 1.
    if label == "neutral":
        confidence = 0.5 + 0.5 * (1 - abs(compound) / _VADER_THRESHOLD)
    else:
        confidence = 0.5 + 0.5 * (abs(compound) - _VADER_THRESHOLD) / (1 - _VADER_THRESHOLD)
    scores = {"positive": polarity["pos"], "negative": polarity["neg"], "neutral": polarity["neu"]}
    return SentimentResult(sentiment=label, confidence=round(confidence, 4), scores=scores, backend="local")


def analyse_local(texts: list[str]) -> SentimentBatch:
    return SentimentBatch(results=[_local_one(t) for t in texts], backend="local", model="vader", usage=llm.Usage())


# --- openai ---------------------------------------------------------------------------

_SYSTEM_PROMPT = (
    "You classify the sentiment of the user's text. Answer with a JSON object only, of the form "
    '{"sentiment": "positive" | "negative" | "neutral", "scores": {"positive": p, "negative": n, '
    '"neutral": u}} where p, n and u are probabilities between 0 and 1 that sum to 1.'
)


def _parse_reply(content: str | None) -> SentimentResult:
    """Validate the model's JSON; anything else is the upstream's failure (502), not an answer."""
    try:
        reply = json.loads(content or "")
        label = reply["sentiment"]
        raw = reply["scores"]
        scores = {name: float(raw[name]) for name in LABELS}
    except (ValueError, TypeError, KeyError) as exc:
        raise UpstreamError("The upstream model's sentiment reply was not the JSON asked for.") from exc
    valid = label in LABELS and all(math.isfinite(v) and 0 <= v <= 1 for v in scores.values())
    total = sum(scores.values())
    if not valid or not 0.9 <= total <= 1.1:
        raise UpstreamError("The upstream model's sentiment reply had invalid labels or scores.")
    scores = {name: value / total for name, value in scores.items()}
    return SentimentResult(sentiment=label, confidence=round(scores[label], 4), scores=scores, backend="openai")


def analyse_openai(texts: list[str]) -> SentimentBatch:
    model = settings.SENTIMENT_OPENAI_MODEL
    results, prompt_tokens, completion_tokens = [], 0, 0
    for text in texts:
        completion = llm.chat_create(
            model=model,
            messages=[{"role": "system", "content": _SYSTEM_PROMPT}, {"role": "user", "content": text}],
            response_format={"type": "json_object"},
            temperature=0,
            max_tokens=100,
        )
        results.append(_parse_reply(completion.choices[0].message.content))
        usage = llm.usage_of(completion.usage)
        prompt_tokens += usage.prompt_tokens
        completion_tokens += usage.completion_tokens
    return SentimentBatch(
        results=results, backend="openai", model=model, usage=llm.Usage(prompt_tokens, completion_tokens)
    )


# --- choosing -------------------------------------------------------------------------


def analyse(texts: list[str], *, backend: str) -> SentimentBatch:
    if backend == "local":
        return analyse_local(texts)
    if backend == "openai":
        return analyse_openai(texts)
    if backend == "hybrid":
        try:
            return analyse_openai(texts)
        except (UpstreamError, UpstreamTimeout, UpstreamUnavailable, BackendNotConfigured) as exc:
            logger.warning("sentiment upstream failed (%s); answering with the local backend", exc.code)
            return analyse_local(texts)
    raise AppError(f"unknown SENTIMENT_BACKEND {backend!r}")
