"""The LLM client: the one place that talks to OpenAI or an OpenAI-compatible server.

It wraps the official `openai` SDK with explicit timeouts and retries from settings, and turns
every SDK failure into one of our errors (504 timeout, 503 upstream overloaded or rate limited,
502 anything else) with a message of our own: the upstream's body can carry its own account
details, so none of it is passed on, and the API key never is.

The SDK (23 MB with pydantic and httpx) is imported on first use, not when the app loads: a
worker that only ever serves predictions never carries it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any

from django.conf import settings

from project.errors import (
    BackendNotConfigured,
    UpstreamError,
    UpstreamRejected,
    UpstreamTimeout,
    UpstreamUnavailable,
)

if TYPE_CHECKING:
    import openai

logger = logging.getLogger(__name__)

_clients: dict[tuple, openai.OpenAI] = {}
_clients_lock = threading.Lock()


@cache
def _sdk() -> Any:
    import openai

    return openai


def is_configured() -> bool:
    return bool(settings.OPENAI_API_KEY or settings.OPENAI_BASE_URL)


def client() -> openai.OpenAI:
    """One SDK client (and its connection pool) per process and configuration."""
    if not is_configured():
        raise BackendNotConfigured()
    config = (
        settings.OPENAI_API_KEY,
        settings.OPENAI_BASE_URL,
        settings.OPENAI_TIMEOUT_SECONDS,
        settings.OPENAI_MAX_RETRIES,
    )
    with _clients_lock:
        if config not in _clients:
            _clients[config] = _sdk().OpenAI(
                # Local OpenAI-compatible servers take any key, but the SDK insists on one.
                api_key=settings.OPENAI_API_KEY or "not-needed",
                base_url=settings.OPENAI_BASE_URL or None,
                timeout=settings.OPENAI_TIMEOUT_SECONDS,
                max_retries=settings.OPENAI_MAX_RETRIES,
            )
        return _clients[config]


@contextmanager
def upstream_errors() -> Iterator[None]:
    """Translate SDK exceptions into our errors, logging what happened (without secrets)."""
    openai = _sdk()
    try:
        yield
    except openai.APITimeoutError:
        logger.warning("upstream timed out after %ss", settings.OPENAI_TIMEOUT_SECONDS)
        raise UpstreamTimeout() from None
    except openai.RateLimitError as exc:
        logger.warning("upstream rate limited us (429)")
        raise UpstreamUnavailable(details=_retry_after(exc)) from None
    except openai.APIStatusError as exc:
        logger.error("upstream answered %s", exc.status_code)
        if exc.status_code in (502, 503, 504):
            raise UpstreamUnavailable() from None
        if exc.status_code in (400, 404, 413, 422):
            # The request itself was refused (an unknown model, a prompt over its context...):
            # the client's to fix. The upstream's own words stay here.
            raise UpstreamRejected() from None
        raise UpstreamError(f"The upstream model server answered {exc.status_code}.") from None
    except openai.APIConnectionError as exc:
        logger.error("cannot reach upstream: %s", exc.__class__.__name__)
        raise UpstreamError("The upstream model server cannot be reached.") from None
    except openai.APIResponseValidationError:
        logger.error("upstream answered something that is not a chat completion")
        raise UpstreamError("The upstream model server answered something malformed.") from None
    except (openai.OpenAIError, ValueError) as exc:  # the SDK lets a reply that is not JSON out as ValueError
        logger.error("upstream failed: %s", exc.__class__.__name__)
        raise UpstreamError("The upstream model server answered something malformed.") from None


def _retry_after(exc: openai.APIStatusError) -> dict[str, Any]:
    value = exc.response.headers.get("retry-after", "")
    return {"retry_after": [value]} if value.isdigit() else {}


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def as_dict(self) -> dict[str, int]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
        }


def _count(value: Any) -> int:
    """A token count as the upstream reported it, if it is one (an integer a column can hold)."""
    return value if type(value) is int and 0 <= value < 2**31 else 0


def usage_from_dict(raw: Any) -> Usage:
    raw = raw if isinstance(raw, dict) else {}
    return Usage(prompt_tokens=_count(raw.get("prompt_tokens")), completion_tokens=_count(raw.get("completion_tokens")))


def usage_of(raw: Any) -> Usage:
    if raw is None:
        return Usage()
    return Usage(
        prompt_tokens=_count(getattr(raw, "prompt_tokens", 0)),
        completion_tokens=_count(getattr(raw, "completion_tokens", 0)),
    )


def chat_create(**params: Any) -> openai.types.chat.ChatCompletion:
    """A non-streaming chat completion; raises our errors, never the SDK's."""
    with upstream_errors():
        completion = client().chat.completions.create(stream=False, **params)
    if not getattr(completion, "choices", None):
        logger.error("upstream answered a completion without choices")
        raise UpstreamError("The upstream model server answered something malformed.")
    return completion


def chat_stream(**params: Any) -> Iterator[openai.types.chat.ChatCompletionChunk]:
    """Open a streaming chat completion; failures to start raise now, not on first read."""
    with upstream_errors():
        stream = client().chat.completions.create(stream=True, stream_options={"include_usage": True}, **params)
    return _guarded(stream)


def _guarded(stream: Any) -> Iterator[openai.types.chat.ChatCompletionChunk]:
    with upstream_errors():
        try:
            yield from stream
        finally:
            stream.close()


def models_list() -> list[dict[str, Any]]:
    with upstream_errors():
        return [model.to_dict() for model in client().models.list()]


def embeddings_create(**params: Any) -> dict[str, Any]:
    """Embeddings of the inputs, in OpenAI's shape; raises our errors, never the SDK's."""
    with upstream_errors():
        answer = client().embeddings.create(**params).to_dict(warnings=False)
    if not isinstance(answer.get("data"), list):
        logger.error("upstream answered embeddings without data")
        raise UpstreamError("The upstream model server answered something malformed.")
    return answer
