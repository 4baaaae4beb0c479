"""Sentiment backends: local (VADER, offline), openai (any OpenAI-compatible server), hybrid.

Every backend answers the same thing for each text: a label, scores for the three labels, and
a confidence derived from those scores — never a constant.
"""

from __future__ import annotations

import heapq
import json
import logging
import math
from dataclasses import asdict, dataclass, replace
from functools import cache
from typing import Any

from django.conf import settings

from inference import budgets, llm, token_count
from project.errors import (
    AppError,
    BackendNotConfigured,
    InvalidInput,
    ServiceUnavailable,
    UpstreamError,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from project.json import dumps

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


def _bounded_vader_class() -> type:
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    class _BoundedVader(SentimentIntensityAnalyzer):
        """VADER, with the same answers at a cost that grows in step with the text.

        vaderSentiment 3.3.2 lower-cases the whole text's word list again inside two checks it runs
        for nearly every sentiment-bearing word, so its cost grows with the square of the word count:
        5,000 emoji (each read as its multi-word description) took 8 s of CPU. Both checks look at
        most three words back and two ahead, so here each is given just that window of the list, with
        the word's index moved to match: the same words at the same offsets, so the same answer
        (tests/inference check it against the library's own on random texts).
        """

        def _negation_check(self, valence: float, words: list[str], start_i: int, i: int) -> float:
            low = max(i - 3, 0)
            return SentimentIntensityAnalyzer._negation_check(valence, words[low : i + 3], start_i, i - low)

        def _special_idioms_check(self, valence: float, words: list[str], i: int) -> float:
            low = max(i - 3, 0)
            return SentimentIntensityAnalyzer._special_idioms_check(valence, words[low : i + 3], i - low)

        @staticmethod
        def _but_check(words: list[str], sentiments: list[float]) -> list[float]:
            """The library's check, in n log n steps instead of n squared, with its exact answers.

            The library walks the scores in order and, for each, rescales the *first* score equal to
            it (`sentiments.index`): halved before the first "but", times 1.5 after it. Scores ahead
            of the walk are never touched, so the one visited is still its original value; the first
            equal score is found here from a heap of the positions holding each value so far.
            """
            lowered = [str(word).lower() for word in words]
            if "but" not in lowered:
                return sentiments
            but_at = lowered.index("but")
            positions: dict[float, list[int]] = {}  # value -> heap of positions that held it
            for visiting, value in enumerate(sentiments):
                heapq.heappush(positions.setdefault(value, []), visiting)
                heap = positions[value]
                while sentiments[heap[0]] != value:  # a position since given another value
                    heapq.heappop(heap)
                first = heap[0]
                if first == but_at:
                    continue
                scaled = value * (0.5 if first < but_at else 1.5)
                sentiments[first] = scaled
                heapq.heappush(positions.setdefault(scaled, []), first)
            return sentiments

    return _BoundedVader


@cache
def _vader() -> Any:
    """The analyser, made on first use: vaderSentiment (and the requests library it imports) stays
    out of workers that never score a text. Reads the lexicon that ships in the package, once."""
    return _bounded_vader_class()()


def _with_emoji_described(text: str, emojis: dict[str, str]) -> str:
    """VADER's own first step (each emoji replaced by its description), done here so the words
    can be counted, and capped, after it: one emoji can become six words."""
    if text.isascii():
        return text.strip()
    parts, after_space = [], True
    for char in text:
        description = emojis.get(char)
        if description is None:
            parts.append(char)
            after_space = char == " "
        else:
            if not after_space:
                parts.append(" ")
            parts.append(description)
            after_space = False
    return "".join(parts).strip()


def vader_words(text: str) -> str:
    """What VADER reads of `text`: emoji described, then at most SENTIMENT_MAX_WORDS words.

    With the checks made linear, VADER costs a few microseconds a word; the cap bounds a text,
    and so a batch of SENTIMENT_MAX_TEXTS, whatever it holds (see the README's measured worst
    case). A text within the cap is passed as it is, so its answer is VADER's exactly.
    """
    described = _with_emoji_described(text, _vader().emojis)
    limit = settings.SENTIMENT_MAX_WORDS
    words = described.split(maxsplit=limit)
    if len(words) <= limit:
        return described
    return " ".join(words[:limit])


def _local_one(text: str) -> SentimentResult:
    polarity = _vader().polarity_scores(vader_words(text))
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

# One upstream request answers a whole batch: the texts go as one JSON array (JSON's escaping
# keeps one text from posing as two), and each text's result is checked on its own.
_SYSTEM_PROMPT = (
    'You classify the sentiment of each text in the user\'s JSON message, {"texts": [...]}. Answer with '
    'a JSON object only, of the form {"results": [{"index": i, "sentiment": "positive" | "negative" | '
    '"neutral", "scores": {"positive": p, "negative": n, "neutral": u}}, ...]}, with one result for every '
    "text, in order, where i is the text's position in the array (from 0) and p, n and u are "
    "probabilities between 0 and 1 that sum to 1."
)
REPLY_TOKENS_PER_TEXT = 100  # the most one text's result may take of the reply (about 40 in practice)
REPLY_TOKENS_OVERHEAD = 20  # the reply's {"results": [...]}


def _texts_message(texts: list[str]) -> str:
    return dumps({"texts": texts}).decode()


def _request(texts: list[str]) -> dict[str, Any]:
    """The chat-completion parameters that ask for the sentiment of `texts` in one call."""
    return {
        "model": settings.SENTIMENT_OPENAI_MODEL,
        "messages": [
            {"role": "system", "content": _SYSTEM_PROMPT},
            {"role": "user", "content": _texts_message(texts)},
        ],
        "response_format": {"type": "json_object"},
        "temperature": 0,
        "max_tokens": REPLY_TOKENS_OVERHEAD + REPLY_TOKENS_PER_TEXT * len(texts),
    }


def plan_requests(texts: list[str], *, api_key: Any = None) -> list[list[int]]:
    """The texts (by index) each upstream request carries: all of them in one request when the
    limits allow, else as few requests as fit. A request fits when
    - its reply's bound is within SENTIMENT_OPENAI_MAX_OUTPUT_TOKENS;
    - its prompt (counted with the model's tokenizer where it is known, else at its byte bound:
      inference.token_count) plus that reply is within SENTIMENT_OPENAI_CONTEXT_TOKENS;
    - its worst case as the key's budget reserves it (the prompt's byte bound plus the reply) is
      within the key's whole budget and tokens per minute, if it has them.
    A text too long to fit even alone goes alone: the upstream, or the budget, decides."""
    context, output = settings.SENTIMENT_OPENAI_CONTEXT_TOKENS, settings.SENTIMENT_OPENAI_MAX_OUTPUT_TOKENS
    whole = budgets.whole_limit(api_key)
    key_limit = None if whole is None else whole[0]
    model = settings.SENTIMENT_OPENAI_MODEL
    empty = _request([])
    base_tokens, base_bound = token_count.chat_prompt_tokens(empty, model), budgets.prompt_token_bound(empty)
    empty_message = _texts_message([])
    empty_tokens, empty_bound = token_count.text_tokens(empty_message, model), budgets.token_bound(empty_message)
    groups: list[list[int]] = []
    current: list[int] = []
    tokens, bound = base_tokens, base_bound
    for index, text in enumerate(texts):
        quoted = _texts_message([text])
        # The text as it sits in the array, and its comma; 2 more for merges at its edges.
        text_tokens = token_count.text_tokens(quoted, model) - empty_tokens + 3
        text_bound = budgets.token_bound(quoted) - empty_bound + 1
        reply = REPLY_TOKENS_OVERHEAD + REPLY_TOKENS_PER_TEXT * (len(current) + 1)
        over = (
            reply > output
            or tokens + text_tokens + reply > context
            or (key_limit is not None and bound + text_bound + reply > key_limit)
        )
        if current and over:
            groups.append(current)
            current, tokens, bound = [], base_tokens, base_bound
        current.append(index)
        tokens += text_tokens
        bound += text_bound
    if current:
        groups.append(current)
    return groups


def _scores_of(item: Any) -> SentimentResult | str:
    """One text's result, validated; or why it is not one."""
    if not isinstance(item, dict):
        return "not an object"
    label, raw = item.get("sentiment"), item.get("scores")
    if label not in LABELS:
        return "no valid label"
    if not isinstance(raw, dict):
        return "no scores"
    try:
        scores = {name: float(raw[name]) for name in LABELS}
    except (KeyError, TypeError, ValueError):
        return "scores missing or not numbers"
    total = sum(scores.values())
    if not all(math.isfinite(v) and 0 <= v <= 1 for v in scores.values()) or not 0.9 <= total <= 1.1:
        return "scores out of range"
    scores = {name: value / total for name, value in scores.items()}
    return SentimentResult(sentiment=label, confidence=round(scores[label], 4), scores=scores, backend="openai")


def _parse_reply(content: str | None, n_texts: int) -> dict[int, SentimentResult]:
    """The valid results of a reply, by the index of their text. A reply that is not the JSON
    object asked for is the upstream's failure (502); a text whose result is missing, duplicated
    or invalid is left out, so that it can be asked for again."""
    try:
        reply = json.loads(content or "")
    except ValueError as exc:
        raise UpstreamError("The upstream model's sentiment reply was not the JSON asked for.") from exc
    items = reply.get("results") if isinstance(reply, dict) else None
    if not isinstance(items, list):
        raise UpstreamError("The upstream model's sentiment reply was not the JSON asked for.")
    found: dict[int, SentimentResult] = {}
    seen: set[int] = set()
    for position, item in enumerate(items):
        index = item.get("index", position) if isinstance(item, dict) else position
        if type(index) is not int or not 0 <= index < n_texts or index in seen:
            continue
        seen.add(index)
        result = _scores_of(item)
        if isinstance(result, SentimentResult):
            found[index] = result
        else:
            logger.warning("sentiment upstream: the result for text %d was invalid (%s)", index, result)
    return found


@dataclass
class Tally:
    """Tokens spent upstream by one sentiment call so far, whatever becomes of the call: what
    it cost is recorded even when it fails or falls back to the local backend."""

    prompt_tokens: int = 0
    completion_tokens: int = 0

    def add(self, usage: llm.Usage) -> None:
        self.prompt_tokens += usage.prompt_tokens
        self.completion_tokens += usage.completion_tokens

    @property
    def usage(self) -> llm.Usage:
        return llm.Usage(self.prompt_tokens, self.completion_tokens)


def _ask(texts: list[str], api_key: Any, tally: Tally) -> dict[int, SentimentResult]:
    """One upstream request for `texts`, within the caller's key's token limits (its worst case
    reserved, then settled to what it used): the valid results by index. What it used is the
    upstream's reported usage, else what was sent and received as inference.token_count counts
    it; it is added to `tally`."""
    params = _request(texts)
    try:
        reservation = budgets.reserve_for(api_key, params)
    except budgets.WorstCaseTooLarge as exc:  # worded for generations: say it of these texts
        raise InvalidInput(
            f"This request's worst case ({exc.worst} tokens: its texts' bound and their replies) is more than "
            f"this API key's whole {exc.name} ({exc.limit}); send shorter texts.",
            details={"texts": [f"a text's worst case is over the key's {exc.name}"]},
        ) from None
    try:
        completion = llm.chat_create(**params)
    except BaseException:
        budgets.release(reservation)
        raise
    content = completion.choices[0].message.content
    usage = llm.usage_of(completion.usage)
    if usage.total_tokens == 0:
        usage = token_count.count_chat(params, content or "", model=completion.model or params["model"]).usage
    tally.add(usage)
    # Answered, so spent, whether or not the reply is usable.
    budgets.settle(reservation, used=usage.total_tokens)
    return _parse_reply(content, len(texts))


def analyse_openai(texts: list[str], *, api_key: Any = None, tally: Tally | None = None) -> SentimentBatch:
    """Every text's sentiment in as few upstream requests as the limits allow (plan_requests).
    Texts the reply gave no valid result for are asked for again, once, together; still without
    one, the call is the upstream's failure (502) naming them. Each request is held against
    `api_key`'s token limits (a key without limits, or None, has none), and what each used is
    added to `tally`."""
    tally = tally if tally is not None else Tally()
    results: dict[int, SentimentResult] = {}
    pending = list(range(len(texts)))
    for _attempt in range(2):
        subset = [texts[i] for i in pending]
        for group in plan_requests(subset, api_key=api_key):
            found = _ask([subset[i] for i in group], api_key, tally)
            results.update({pending[group[i]]: result for i, result in found.items()})
        pending = [i for i in range(len(texts)) if i not in results]
        if not pending:
            break
    if pending:
        named = ", ".join(str(i) for i in pending[:10])
        raise UpstreamError(f"The upstream model gave no valid sentiment for text {named}, asked twice.")
    return SentimentBatch(
        results=[results[i] for i in range(len(texts))],
        backend="openai",
        model=settings.SENTIMENT_OPENAI_MODEL,
        usage=tally.usage,
    )


# --- choosing -------------------------------------------------------------------------


# What makes the hybrid backend answer locally: the upstream failing or missing, and the key's
# token limits refusing the upstream call (the local answer costs no tokens).
_FALL_BACK_ON = (
    UpstreamError,
    UpstreamTimeout,
    UpstreamUnavailable,
    BackendNotConfigured,
    budgets.BudgetExceeded,
    budgets.TokensPerMinuteExceeded,
    budgets.TooManyParallelRequests,
    ServiceUnavailable,
    InvalidInput,
)


def analyse(texts: list[str], *, backend: str, api_key: Any = None, tally: Tally | None = None) -> SentimentBatch:
    """The texts' sentiment from `backend`; tokens spent upstream are added to `tally` (also
    those of a hybrid call that then fell back, which its local batch's usage says too)."""
    tally = tally if tally is not None else Tally()
    if backend == "local":
        return analyse_local(texts)
    if backend == "openai":
        return analyse_openai(texts, api_key=api_key, tally=tally)
    if backend == "hybrid":
        try:
            return analyse_openai(texts, api_key=api_key, tally=tally)
        except _FALL_BACK_ON as exc:
            logger.warning("sentiment upstream refused or failed (%s); answering with the local backend", exc.code)
            return replace(analyse_local(texts), usage=tally.usage)
    raise AppError(f"unknown SENTIMENT_BACKEND {backend!r}")
