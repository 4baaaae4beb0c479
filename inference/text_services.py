"""Sentiment and text generation: cache, call the backend, record who used what.

Generation is recorded like predictions (who, backend, model, latency, tokens, cached); texts
are kept only when STORE_TEXTS is on. Calls that wait on an upstream give their database
connection back first (project.db.release_connection).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.db import DatabaseError

from inference import budgets, llm, sentiment, token_count
from inference.models import Generation, SentimentCall
from inference.response_cache import cache_key, cached_answer, cached_answers, remember_answer, remember_answers
from project.db import release_connection
from project.errors import AppError, ClientClosedRequest, DatabaseUnavailable, UpstreamError
from project.json import dumps

logger = logging.getLogger(__name__)


def _elapsed_ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000


# --- sentiment --------------------------------------------------------------------------


def sentiment_create(
    *, user: User, texts: list[str], api_key: Any = None, tally: sentiment.Tally | None = None
) -> tuple[SentimentCall, list[dict[str, Any]]]:
    """Analyse texts with the configured backend; answers for identical texts come from the cache.
    Upstream calls are held against `api_key`'s token limits (inference.budgets), and the tokens
    they use are added to `tally` as they are spent (so a call that then fails still says them).

    Returns the stored call and one result per text (each with its own `cached` flag).
    """
    started = time.perf_counter()
    backend = settings.SENTIMENT_BACKEND
    model = "vader" if backend == "local" else settings.SENTIMENT_OPENAI_MODEL
    keys = [cache_key("sentiment", user=user.pk, backend=backend, model=model, text=text) for text in texts]
    found = cached_answers(keys)
    answers: list[dict[str, Any] | None] = [found.get(key) for key in keys]
    missing = [i for i, answer in enumerate(answers) if answer is None]

    batch_backend, answered_by, usage = backend, model, llm.Usage()
    if missing:
        if backend != "local":
            release_connection()
        batch = sentiment.analyse([texts[i] for i in missing], backend=backend, api_key=api_key, tally=tally)
        batch_backend, answered_by, usage = batch.backend, batch.model, batch.usage
        fresh = {}
        for index, result in zip(missing, batch.results, strict=True):
            answers[index] = result.as_dict()
            # A hybrid fallback answer is not what the configured backend would say: keep it out.
            if result.backend != "local" or backend == "local":
                fresh[keys[index]] = answers[index]
        remember_answers(fresh, seconds=settings.RESPONSE_CACHE_SECONDS)
    # Every text has its answer by now (the zip above is strict): the filter only narrows the type.
    results = [{**answer, "cached": i not in missing} for i, answer in enumerate(answers) if answer is not None]
    call = SentimentCall.objects.create(
        user=user,
        backend=batch_backend,
        model=answered_by,
        n_texts=len(texts),
        texts=texts if settings.STORE_TEXTS else None,
        results=results,
        cached=not missing,
        prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens,
        latency_ms=_elapsed_ms(started),
    )
    return call, results


# --- generation -------------------------------------------------------------------------


@dataclass
class GenerationRequest:
    """What a caller asked for, whichever route it came through."""

    route: str
    params: dict[str, Any]  # the chat-completions parameters sent upstream
    stream: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def cacheable(self) -> bool:
        # Only a deterministic request has one right answer to remember.
        return not self.stream and self.params.get("temperature") == 0 and self.params.get("n", 1) == 1

    @property
    def model(self) -> str:
        return self.params["model"]


def generation_request(
    *, prompt: str, system: str = "", max_tokens: int | None = None, temperature: float | None = None
) -> dict[str, Any]:
    """The upstream parameters for POST /api/v1/generations/."""
    messages = [{"role": "system", "content": system}] if system else []
    messages.append({"role": "user", "content": prompt})
    params: dict[str, Any] = {
        "model": settings.OPENAI_MODEL,
        "messages": messages,
        "max_tokens": max_tokens or settings.GENERATION_DEFAULT_MAX_TOKENS,
    }
    if temperature is not None:
        params["temperature"] = temperature
    return params


def _record(
    *,
    user: User,
    request: GenerationRequest,
    output: str | None,
    finish_reason: str,
    usage: llm.Usage,
    cached: bool,
    started: float,
    error_code: str = "",
    model: object = None,  # as the upstream named it: anything but a non-empty string means request.model
    usage_estimated: bool = False,
    prompt: Any = None,  # what was sent, when not chat messages (embeddings' inputs)
) -> Generation:
    store = settings.STORE_TEXTS
    # Tokens spent upstream: none for an answer from the cache. Values the upstream chose are
    # cut to the columns' sizes: a long model path must not lose the record.
    spent = llm.Usage() if cached else usage
    return Generation.objects.create(
        user=user,
        route=request.route,
        model=_text_or(model, request.model)[:100],
        prompt=(request.params["messages"] if prompt is None else prompt) if store else None,
        output=output if store else None,
        max_tokens=request.params.get("max_tokens") or request.params.get("max_completion_tokens"),
        temperature=request.params.get("temperature"),
        stream=request.stream,
        cached=cached,
        finish_reason=_text_or(finish_reason, "")[:30],
        prompt_tokens=max(spent.prompt_tokens, 0),
        completion_tokens=max(spent.completion_tokens, 0),
        error_code=error_code,
        usage_estimated=usage_estimated and not cached,
        latency_ms=_elapsed_ms(started),
    )


@dataclass(frozen=True)
class CompletionAnswer:
    generation: Generation
    completion: dict[str, Any]  # the upstream's answer, in OpenAI's own shape
    text: str
    cached: bool


def _first_choice(completion: dict[str, Any]) -> tuple[str, str]:
    """The text and finish reason of a completion's first choice; a completion not shaped as one
    (choices that are not objects, content that is not text) is the upstream's failure."""
    choices = completion.get("choices")
    choice = choices[0] if isinstance(choices, list) and choices else None
    message = choice.get("message") if isinstance(choice, dict) else None
    content = message.get("content") if isinstance(message, dict) else None
    if not isinstance(choice, dict) or not isinstance(message, dict) or not isinstance(content, str | None):
        logger.error("upstream answered a completion without a readable first choice")
        raise UpstreamError("The upstream model server answered something malformed.")
    return content or "", _text_or(choice.get("finish_reason"), "")


def completion_create(*, user: User, request: GenerationRequest, api_key: Any = None) -> CompletionAnswer:
    """A non-streaming completion, from the cache when the request is deterministic, within
    `api_key`'s token limits (inference.budgets): its worst case reserved first (which also
    gives a key with limits a max_tokens, before the cache key is made), then settled to what it
    used (nothing, from the cache), or given back if it failed."""
    reservation = budgets.reserve_for(api_key, request.params)
    try:
        answer = _completion(user=user, request=request)
    except BaseException:
        budgets.release(reservation)
        raise
    used = 0 if answer.cached else answer.generation.prompt_tokens + answer.generation.completion_tokens
    budgets.settle(reservation, used=used)
    return answer


def _completion(*, user: User, request: GenerationRequest) -> CompletionAnswer:
    started = time.perf_counter()
    # The parameters apart: OpenAI's own `user` parameter is one of them.
    key = cache_key("completion", user=user.pk, params=request.params) if request.cacheable else None
    completion: dict[str, Any] | None = cached_answer(key) if key else None
    cached = completion is not None
    if completion is None:
        release_connection()
        # Shape problems are ours to judge (_first_choice), not pydantic warnings in the log.
        completion = llm.chat_create(**request.params).to_dict(warnings=False)
        if key:
            remember_answer(key, completion, seconds=settings.RESPONSE_CACHE_SECONDS)
    text, finish_reason = _first_choice(completion)
    generation = _record(
        user=user,
        request=request,
        output=text,
        finish_reason=finish_reason,
        usage=llm.usage_from_dict(completion.get("usage")),
        cached=cached,
        started=started,
        model=completion.get("model"),
    )
    return CompletionAnswer(generation=generation, completion=completion, text=text, cached=cached)


def completion_stream(
    *,
    user: User,
    request: GenerationRequest,
    render: StreamRenderer,
    api_key: Any = None,
    on_finish: Callable[[Generation | None, AppError | None], None] | None = None,
) -> Iterator[bytes]:
    """Open the upstream stream now (so a failure to start is a plain error status), then
    yield server-sent events as `render` shapes them, recording the generation at the end
    (and telling `on_finish` how it ended, for the request log).

    Held against `api_key`'s token limits like `completion_create`: reserved before the stream
    opens, given back if it cannot, and settled when it ends to the tokens recorded (or, when
    the record could not be written, to the whole reservation: unknown use counts as spent).

    A stream counts as answered only when every choice it started has a finish reason: one that
    ends without (cut off, or a body that was never a stream), or with a chunk that cannot be
    read, ends with an error event and is recorded as the failure it is, never as a success.
    """
    reservation = budgets.reserve_for(api_key, request.params)
    started = time.perf_counter()
    try:
        release_connection()
        chunks = llm.chat_stream(**request.params)
    except BaseException:
        budgets.release(reservation)
        raise

    def events() -> Iterator[bytes]:
        parts: list[str] = []
        received: list[str] = []  # tool calls' names and arguments: tokens too, though not output text
        usage, model = llm.Usage(), request.model
        finish_reasons: dict[int, str] = {}  # choice index -> its finish reason ("" until it has one)
        # Until the stream has been read to its end, the one who stopped it is the client.
        failure: AppError | None = ClientClosedRequest()
        generation: Generation | None = None
        try:
            yield b""  # where the stream waits once primed (below): from here, closing it runs the finally
            for chunk in chunks:
                with _malformed_chunks():
                    model = _text_or(chunk.model, model)
                    if chunk.usage is not None:
                        usage = llm.usage_of(chunk.usage)
                    for choice in chunk.choices:
                        content = choice.delta.content if choice.delta is not None else None
                        if content is not None:
                            if not isinstance(content, str):
                                raise TypeError("delta content is not a string")
                            parts.append(content)
                        received.extend(_tool_call_text(choice.delta))
                        index = choice.index if isinstance(choice.index, int) else 0
                        finish_reasons[index] = _text_or(choice.finish_reason, finish_reasons.get(index, ""))
                    event = render.chunk(chunk)
                if event:
                    yield event
            if not finish_reasons or not all(finish_reasons.values()):
                logger.error("upstream stream ended before every choice had a finish reason")
                raise UpstreamError("The upstream model server's stream ended before its answer was finished.")
            failure = None
        except AppError as exc:
            failure = exc
            yield render.error(exc)
        finally:
            try:
                output = "".join(parts)
                # No usage from the upstream (one that ignores include_usage, or a client that left
                # before the last chunk): what was sent and received, counted with the model's own
                # tokenizer where it is known, else at its bound (inference/token_count.py), and
                # marked as estimated.
                estimated = usage.total_tokens == 0 and (
                    bool(output) or failure is None or isinstance(failure, ClientClosedRequest)
                )
                if estimated:
                    usage = token_count.count_chat(request.params, output + "".join(received), model=model).usage
                try:
                    generation = _record(
                        user=user,
                        request=request,
                        output=output,
                        finish_reason=finish_reasons.get(0, ""),
                        usage=usage,
                        cached=False,
                        started=started,
                        error_code=failure.code if failure is not None else "",
                        model=model,
                        usage_estimated=estimated,
                    )
                except DatabaseError:
                    logger.exception("could not record a streamed generation")
                    if failure is None:
                        failure = DatabaseUnavailable()
            finally:
                # Whatever became of the record, the key's budget is settled (to the whole
                # reservation when the record could not say what was used) and the upstream
                # call stops now, not when the generator is collected.
                if generation is not None:
                    budgets.settle(reservation, used=generation.prompt_tokens + generation.completion_tokens)
                elif reservation is not None:
                    budgets.settle(reservation, used=reservation.tokens)
                close = getattr(chunks, "close", None)
                if close is not None:
                    close()
            if on_finish is not None:
                on_finish(generation, failure)
        if failure is None and generation is not None:  # recorded: else failure says why not
            done = render.done(generation, usage)
            if done:
                yield done
        elif isinstance(failure, DatabaseUnavailable):
            yield render.error(failure)

    # Started now, up to its first line inside the try: a stream closed or dropped before anyone
    # reads it (a client gone before the first byte) is then recorded, settled and its upstream
    # call stopped like one left midway. A generator not yet started runs nothing when closed.
    stream = events()
    next(stream)
    return stream


def _tool_call_text(delta: Any) -> list[str]:
    """The names and argument text a chunk's delta adds to its tool calls."""
    found: list[str] = []
    for call in getattr(delta, "tool_calls", None) or []:
        function = getattr(call, "function", None)
        for part in (getattr(function, "name", None), getattr(function, "arguments", None)):
            if isinstance(part, str):
                found.append(part)
    return found


@contextmanager
def _malformed_chunks() -> Iterator[None]:
    """A chunk the SDK let through but that is not shaped as one (choices null, a delta that is
    a number...): the upstream's failure, in our words, never a TypeError mid-stream."""
    try:
        yield
    except (TypeError, AttributeError, ValueError, KeyError) as exc:
        logger.error("upstream stream sent a malformed chunk: %s", exc.__class__.__name__)
        raise UpstreamError("The upstream model server sent a malformed chunk.") from None


def _text_or(value: Any, default: str) -> str:
    """`value` when it is a non-empty string (a model name, a finish reason), else `default`."""
    return value if isinstance(value, str) and value else default


def sse(data: Any, *, event: str | None = None) -> bytes:
    head = f"event: {event}\n".encode() if event else b""
    return head + b"data: " + (data if isinstance(data, bytes) else dumps(data)) + b"\n\n"


class StreamRenderer:
    """How one route shapes its server-sent events."""

    def chunk(self, chunk: Any) -> bytes | None:
        raise NotImplementedError

    def error(self, exc: AppError) -> bytes:
        return sse({"error": {"code": exc.code, "message": exc.message, "details": exc.details}}, event="error")

    def done(self, generation: Generation, usage: llm.Usage) -> bytes | None:
        return None


class GenerationEvents(StreamRenderer):
    """POST /api/v1/generations/ with stream: `delta` events, then one `done` event."""

    def chunk(self, chunk: Any) -> bytes | None:
        text = "".join(c.delta.content for c in chunk.choices if c.delta and c.delta.content)
        return sse({"text": text}, event="delta") if text else None

    def done(self, generation: Generation, usage: llm.Usage) -> bytes:
        body = {
            "id": generation.pk,
            "model": generation.model,
            "finish_reason": generation.finish_reason,
            "usage": usage.as_dict(),
            "cached": False,
        }
        return sse(body, event="done")


class OpenAIEvents(StreamRenderer):
    """/v1/chat/completions with stream: OpenAI's own chunks, then `data: [DONE]`."""

    def __init__(self, *, include_usage: bool) -> None:
        self.include_usage = include_usage

    def chunk(self, chunk: Any) -> bytes | None:
        if not chunk.choices and not self.include_usage:
            return None  # the usage chunk we asked for on our own account
        return sse(chunk.to_json(indent=None).encode())

    def error(self, exc: AppError) -> bytes:
        return sse({"error": {"code": exc.code, "message": exc.message, "type": "upstream_error"}})

    def done(self, generation: Generation, usage: llm.Usage) -> bytes:
        return sse(b"[DONE]")


@dataclass(frozen=True)
class EmbeddingsAnswer:
    generation: Generation
    answer: dict[str, Any]
    cached: bool


def embeddings_create(*, user: User, params: dict[str, Any], api_key: Any = None) -> EmbeddingsAnswer:
    """Embeddings, from the cache when the same caller asked the same before (they are
    deterministic), recorded with the tokens they used. Held against `api_key`'s token limits
    as completions are: the inputs' bound reserved (embeddings have no completion), then settled
    to the tokens used."""
    prompt_tokens = sum(budgets.token_bound(text) for text in params["input"])
    reservation = budgets.reserve(api_key, prompt_tokens=prompt_tokens, max_tokens=0)
    try:
        answer = _embeddings(user=user, params=params)
    except BaseException:
        budgets.release(reservation)
        raise
    budgets.settle(reservation, used=0 if answer.cached else answer.generation.prompt_tokens)
    return answer


def _embeddings(*, user: User, params: dict[str, Any]) -> EmbeddingsAnswer:
    started = time.perf_counter()
    key = cache_key("embeddings", user=user.pk, params=params)
    answer: dict[str, Any] | None = cached_answer(key)
    cached = answer is not None
    if answer is None:
        release_connection()
        answer = llm.embeddings_create(**params)
        remember_answer(key, answer, seconds=settings.RESPONSE_CACHE_SECONDS)
    request = GenerationRequest(route=Generation.Route.EMBEDDINGS, params={"model": params["model"], "messages": []})
    generation = _record(
        user=user,
        request=request,
        output=None,
        finish_reason="",
        usage=llm.usage_from_dict(answer.get("usage")),
        cached=cached,
        started=started,
        model=answer.get("model"),
        prompt=params["input"],
    )
    return EmbeddingsAnswer(generation=generation, answer=answer, cached=cached)
