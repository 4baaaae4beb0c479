"""A local HTTP server that speaks OpenAI's chat-completions protocol, for tests.

The real `openai` SDK talks to it over real HTTP. Its behaviour is set per test through
`server.mode` ("ok", "slow", "429", "500", "malformed", "prose", and for streams "cut-stream": no
finish reason, "garbled-stream": a chunk that is not JSON, "null-choices": a chunk whose choices
are null, "odd-types": a chunk whose content is a number; "odd-completion": choices that are not
objects), `server.delay`, and "hold": every call waits until the test sets `server.release`;
every request it receives is kept in `server.calls`, so a test can tell whether the upstream was
asked.
"""

from __future__ import annotations

import hashlib
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

POSITIVE = {"love", "great", "good", "excellent", "happy", "wonderful"}
NEGATIVE = {"hate", "terrible", "bad", "awful", "sad", "broken"}
LEAKY_KEY = "sk-upstream-secret-1234"  # appears in the fake's error bodies; must never reach a client


def _words(text: str) -> list[str]:
    return [w.strip(".,!?").lower() for w in text.split()]


def _sentiment_of(text: str) -> dict[str, Any]:
    words = _words(text)
    pos = sum(w in POSITIVE for w in words)
    neg = sum(w in NEGATIVE for w in words)
    total = pos + neg + 1
    scores = {"positive": pos / total, "negative": neg / total, "neutral": 1 / total}
    label = max(scores, key=scores.get)
    return {"sentiment": label, "scores": scores}


def _batched_texts(content: str) -> list[str] | None:
    """The texts of the service's batched sentiment message ({"texts": [...]}), else None."""
    try:
        message = json.loads(content)
    except ValueError:
        return None
    texts = message.get("texts") if isinstance(message, dict) else None
    return [str(t) for t in texts] if isinstance(texts, list) else None


def _sentiment_json(server: FakeOpenAI, text: str) -> str:
    """A sentiment reply: for a batch, one result per text, with `server.sentiment_fault` applied
    to the next `server.sentiment_faults` batches: "drop-last" leaves the last text's result out,
    "bad-last" gives it scores summing to 3, "duplicate-first" answers the first text twice in
    place of the last."""
    texts = _batched_texts(text)
    if texts is None:
        return json.dumps(_sentiment_of(text))
    results = [{"index": i, **_sentiment_of(t)} for i, t in enumerate(texts)]
    with server.lock:
        fault = server.sentiment_fault if server.sentiment_faults > 0 else None
        server.sentiment_faults -= fault is not None
    if fault == "drop-last":
        results.pop()
    elif fault == "bad-last":
        results[-1]["scores"] = {"positive": 1.0, "negative": 1.0, "neutral": 1.0}
    elif fault == "duplicate-first":
        results[-1] = {**results[0]}
    return json.dumps({"results": results})


class FakeOpenAI(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.mode = "ok"
        self.delay = 0.0
        self.chunk_delay = 0.0  # seconds between a stream's chunks
        self.calls: list[dict[str, Any]] = []
        # Count prompts as the service's budgets bound them (inference/budgets.py), so that a call's
        # worst case is exactly what it uses: budget tests can then say exactly how many calls fit.
        self.usage_as_estimated = False
        self.stream_usage = True  # False: a stream never reports usage, even when asked
        self.sentiment_fault = ""  # see _sentiment_json
        self.sentiment_faults = 0
        self.in_flight = self.most_in_flight = 0  # requests being answered at once, and the most seen
        self.streams_cut = 0  # streams the service closed before their end (a write found it gone)
        self.lock = threading.Lock()
        self.idle = threading.Condition(self.lock)  # notified when in_flight drops to 0
        self.release = threading.Event()  # what calls in "hold" mode wait for

    def reset(self, drain_seconds: float = 60.0) -> None:
        """Back to a healthy upstream with no calls seen, for the next test.

        First lets held calls go and waits for the requests still being answered: a call an
        earlier test timed out on is still sleeping here, and would otherwise wake up inside
        this test, take its fault and answer nobody."""
        self.release.set()
        with self.idle:
            if not self.idle.wait_for(lambda: self.in_flight == 0, timeout=drain_seconds):
                raise RuntimeError(f"{self.in_flight} fake upstream requests still open after {drain_seconds} s")
            self.release = threading.Event()
            self.mode, self.delay, self.chunk_delay = "ok", 0.0, 0.0
            self.usage_as_estimated, self.stream_usage = False, True
            self.sentiment_fault, self.sentiment_faults = "", 0
            self.most_in_flight = self.streams_cut = 0
            self.calls.clear()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"

    def start(self) -> FakeOpenAI:
        threading.Thread(target=self.serve_forever, daemon=True).start()
        return self

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that gave up on a slow answer (a timeout test) closed the socket: expected.
        if isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            return
        super().handle_error(request, client_address)

    def completion_calls(self) -> list[dict[str, Any]]:
        return [c for c in self.calls if c["path"].endswith("/chat/completions")]


class _Handler(BaseHTTPRequestHandler):
    server: FakeOpenAI
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:  # quiet
        pass

    def _send_json(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _begin(self) -> None:
        with self.server.lock:
            self.server.in_flight += 1
            self.server.most_in_flight = max(self.server.most_in_flight, self.server.in_flight)

    def _done(self) -> None:
        with self.server.lock:
            self.server.in_flight -= 1
            if self.server.in_flight == 0:
                self.server.idle.notify_all()

    def do_GET(self) -> None:
        with self.server.lock:
            self.server.calls.append(
                {"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()}, "body": None}
            )
        if self.path.rstrip("/") == "/v1/models":
            data = [{"id": "fake-gpt", "object": "model", "created": 1700000000, "owned_by": "fake"}]
            self._send_json(200, {"object": "list", "data": data})
        else:
            self._send_json(404, {"error": {"message": "no such route", "type": "invalid_request_error"}})

    def do_POST(self) -> None:
        self._begin()
        try:
            self._post()
        finally:
            self._done()

    def _post(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        with self.server.lock:
            self.server.calls.append(
                {"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()}, "body": body}
            )
        mode = self.server.mode
        if mode == "slow":
            time.sleep(self.server.delay)
        elif mode == "hold":
            self.server.release.wait(timeout=300)
            mode = "ok"
        if mode == "429":
            error = {"message": f"Rate limit reached for key {LEAKY_KEY}", "type": "requests", "code": "rate_limit"}
            self._send_json(429, {"error": error}, {"retry-after": "0"})
            return
        if mode == "400":
            error = {"message": f"model not found for key {LEAKY_KEY}", "type": "invalid_request_error"}
            self._send_json(400, {"error": error})
            return
        if mode == "500":
            self._send_json(500, {"error": {"message": f"internal failure near {LEAKY_KEY}", "type": "server"}})
            return
        if mode == "odd-completion":  # JSON, but choices that are not choices
            self._send_json(200, {"id": "x", "object": "chat.completion", "model": 7, "choices": [None, 5]})
            return
        if mode == "malformed":
            data = b'{"id": "x", "choices": [ this is not json'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        if self.path.rstrip("/").endswith("/embeddings"):
            self._embed(body)
            return
        self._complete(body)

    def _embed(self, body: dict[str, Any]) -> None:
        """Deterministic vectors (8 numbers from each text's SHA-256), usage by words."""
        texts = body.get("input")
        texts = [texts] if isinstance(texts, str) else list(texts or [])
        data = []
        for index, text in enumerate(texts):
            digest = hashlib.sha256(str(text).encode()).digest()
            data.append({"object": "embedding", "index": index, "embedding": [b / 255 for b in digest[:8]]})
        tokens = sum(len(str(text).split()) for text in texts)
        usage = {"prompt_tokens": tokens, "total_tokens": tokens}
        self._send_json(
            200, {"object": "list", "data": data, "model": body.get("model") or "fake-embed", "usage": usage}
        )

    def _complete(self, body: dict[str, Any]) -> None:
        messages = body.get("messages") or []
        last = str(messages[-1].get("content", "")) if messages else ""
        wants_json = (body.get("response_format") or {}).get("type") in ("json_object", "json_schema")
        if wants_json and self.server.mode != "prose":
            content = _sentiment_json(self.server, last)
        elif wants_json:
            content = "I would say the sentiment is positive."
        else:
            content = f"Echo: {last}"
        words = content.split(" ")
        finish = "stop"
        limit = body.get("max_tokens") or body.get("max_completion_tokens")
        if limit and len(words) > limit:
            words, finish = words[:limit], "length"
        content = " ".join(words)
        usage = {
            "prompt_tokens": sum(len(str(m.get("content", "")).split()) for m in messages),
            "completion_tokens": len(words),
        }
        if self.server.usage_as_estimated:
            from inference.budgets import prompt_token_bound

            usage["prompt_tokens"] = prompt_token_bound(body)
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        model = body.get("model") or "fake-gpt"
        if body.get("stream"):
            asked = bool((body.get("stream_options") or {}).get("include_usage"))
            self._stream(model, words, finish, usage, asked and self.server.stream_usage)
            return
        message = {"role": "assistant", "content": content}
        self._send_json(
            200,
            {
                "id": "chatcmpl-fake",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": model,
                "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": None}],
                "usage": usage,
            },
        )

    def _stream(self, model: str, words: list[str], finish: str, usage: dict, include_usage: bool) -> None:
        try:
            self._send_stream(model, words, finish, usage, include_usage)
        except (BrokenPipeError, ConnectionResetError):  # the service closed the stream: stop generating
            with self.server.lock:
                self.server.streams_cut += 1

    def _send_stream(self, model: str, words: list[str], finish: str, usage: dict, include_usage: bool) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

        def chunk(delta: dict, finish_reason: str | None = None, with_usage: dict | None = None) -> None:
            choices = [] if with_usage else [{"index": 0, "delta": delta, "finish_reason": finish_reason}]
            event = {
                "id": "chatcmpl-fake",
                "object": "chat.completion.chunk",
                "created": int(time.time()),
                "model": model,
                "choices": choices,
            }
            if with_usage:
                event["usage"] = with_usage
            self._write_chunk(f"data: {json.dumps(event)}\n\n".encode())

        chunk({"role": "assistant", "content": ""})
        for index, word in enumerate(words):
            time.sleep(self.server.chunk_delay)
            chunk({"content": word if index == 0 else f" {word}"})
            if self.server.mode == "null-choices" and index == 1:
                self._write_chunk(b'data: {"id": "x", "object": "chat.completion.chunk", "choices": null}\n\n')
            if self.server.mode == "odd-types" and index == 1:
                odd = {"id": "x", "model": 7, "choices": [{"index": "0", "delta": {"content": 5}, "finish_reason": 9}]}
                self._write_chunk(f"data: {json.dumps(odd)}\n\n".encode())
            if self.server.mode == "garbled-stream" and index == 1:
                self._write_chunk(b'data: {"id": "chatcmpl-fake", "choices": [ not json\n\n')
                self._write_chunk(b"")
                return
        if self.server.mode == "cut-stream":  # the answer stops: no finish reason, then [DONE]
            self._write_chunk(b"data: [DONE]\n\n")
            self._write_chunk(b"")
            return
        chunk({}, finish)
        if include_usage:
            chunk({}, None, usage)
        self._write_chunk(b"data: [DONE]\n\n")
        self._write_chunk(b"")

    def _write_chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()
