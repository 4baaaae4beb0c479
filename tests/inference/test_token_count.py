"""A stream's tokens when the upstream does not report them: OpenAI's tokenizer (tiktoken) for
OpenAI's models, from the packaged vocabularies with nothing downloaded, and the byte bound for
models whose tokenizer is unknown; through the real SDK against the local OpenAI-protocol server."""

from __future__ import annotations

import hashlib
import os
import time

import pytest
import tiktoken.load
import tiktoken.registry

from inference import token_count
from inference.models import Generation

MESSAGES = [{"role": "user", "content": "hello world"}]


@pytest.fixture
def fresh_tokenizers(tmp_path, monkeypatch, settings):
    """An empty tiktoken cache, and any download tiktoken tries made to fail loudly."""
    monkeypatch.delenv("TIKTOKEN_CACHE_DIR", raising=False)
    settings.TIKTOKEN_CACHE_DIR = str(tmp_path)

    def no_download(blobpath: str) -> bytes:
        raise AssertionError(f"tiktoken tried to download {blobpath}")

    monkeypatch.setattr(tiktoken.load, "read_file", no_download)
    monkeypatch.setattr(tiktoken.registry, "ENCODINGS", {})  # tiktoken's own copies of those loaded
    token_count.forget()
    yield tmp_path
    token_count.forget()


def test_openais_vocabularies_load_with_nothing_downloaded(fresh_tokenizers):
    o200k, cl100k = token_count.encoding("o200k_base"), token_count.encoding("cl100k_base")
    # the ids OpenAI's tokenizers give (cl100k's as tiktoken's own tests have them)
    assert o200k.encode("hello world") == [24912, 2375]
    assert cl100k.encode("hello world") == [15339, 1917]
    assert token_count.encoding_for("gpt-4o-mini-2024-07-18") is o200k
    assert token_count.encoding_for("gpt-4.1") is o200k
    assert token_count.encoding_for("text-embedding-3-small") is cl100k
    assert token_count.encoding_for("llama3.2") is None
    assert len(os.listdir(fresh_tokenizers)) == 2


def test_a_wrong_file_in_tiktokens_cache_is_replaced_with_openais(fresh_tokenizers):
    source = "https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken"
    cached = fresh_tokenizers / hashlib.sha1(source.encode()).hexdigest()  # noqa: S324
    cached.write_bytes(b"aGVsbG8= 0\n")  # a vocabulary of one token: not OpenAI's
    assert token_count.encoding("o200k_base").encode("hello world") == [24912, 2375]
    expected = "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d"
    assert hashlib.sha256(cached.read_bytes()).hexdigest() == expected


def test_without_a_vocabulary_counts_fall_back_to_bytes_and_it_is_tried_again_later(fresh_tokenizers, monkeypatch):
    sources = token_count._SOURCES
    monkeypatch.setattr(token_count, "_SOURCES", {"o200k_base": (sources["o200k_base"][0], "0" * 64)})
    assert token_count.encoding("o200k_base") is None  # the packaged file is not what was expected
    counted = token_count.count_chat({"model": "gpt-4o-mini", "messages": MESSAGES}, "Echo: hello world", model="")
    assert counted.tokenizer == "bytes"
    assert counted.usage.completion_tokens == len(b"Echo: hello world")
    monkeypatch.setattr(token_count, "_SOURCES", sources)
    assert token_count.encoding("o200k_base") is None  # not tried again at once
    token_count._failed_at["o200k_base"] = time.monotonic() - token_count.RETRY_SECONDS - 1
    assert token_count.encoding("o200k_base") is not None


def test_openais_recipe_for_chat_messages():
    enc = token_count.encoding("o200k_base")
    params = {"messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi", "name": "ann"}]}
    expected = 3 + (3 + 1 + len(enc.encode("be brief"))) + (3 + 1 + 1 + 1 + 1)  # "system", "user", "hi", "ann", +1
    assert token_count.prompt_tokens(params, enc) == expected


@pytest.mark.django_db
def test_a_stream_without_usage_is_counted_with_the_models_tokenizer(client_for, alice, fake_openai):
    fake_openai.stream_usage = False
    body = {"model": "gpt-4o-mini", "messages": MESSAGES, "stream": True}
    response = client_for(alice).post("/v1/chat/completions", body, format="json")
    assert response.status_code == 200
    b"".join(response.streaming_content)
    generation = Generation.objects.get()
    enc = token_count.encoding("o200k_base")
    assert generation.usage_estimated
    # 3 to prime the reply, 3 for the message, "user" and "hello world"
    assert generation.prompt_tokens == 3 + 3 + 1 + 2
    assert generation.completion_tokens == len(enc.encode("Echo: hello world")) == 4
    # "Echo: hello" is 3 tokens, more than a max_tokens of 2 lets the upstream send
    response = client_for(alice).post("/v1/chat/completions", {**body, "max_tokens": 2}, format="json")
    b"".join(response.streaming_content)
    capped = Generation.objects.latest("id")
    assert len(enc.encode(capped.output)) == 3 and capped.completion_tokens == 2


@pytest.mark.django_db
def test_a_stream_of_a_model_with_no_known_tokenizer_is_charged_its_bound(client_for, alice, fake_openai):
    fake_openai.stream_usage = False
    body = {"model": "llama3.2", "messages": MESSAGES, "stream": True}
    response = client_for(alice).post("/v1/chat/completions", body, format="json")
    b"".join(response.streaming_content)
    generation = Generation.objects.get()
    assert generation.usage_estimated
    assert generation.completion_tokens == len(b"Echo: hello world")
    assert generation.prompt_tokens > len(b"hello world")
    # never more than max_tokens, which the upstream cannot exceed: 17 bytes, charged 3
    response = client_for(alice).post("/v1/chat/completions", {**body, "max_tokens": 3}, format="json")
    b"".join(response.streaming_content)
    capped = Generation.objects.latest("id")
    assert capped.usage_estimated and capped.completion_tokens == 3
