"""Sentiment, generation, and the OpenAI-compatible routes: validate, call one service, render."""

from __future__ import annotations

import functools

from django.conf import settings
from django.http import StreamingHttpResponse
from drf_spectacular.utils import OpenApiExample, PolymorphicProxySerializer, extend_schema
from rest_framework import status, viewsets
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.permissions import authenticated_user
from analytics.recording import note_failure, note_usage
from inference import llm, sentiment, text_services
from inference.idempotency import idempotent
from inference.models import Generation
from inference.response_cache import cache_key, cached_answer, remember_answer
from inference.text_serializers import (
    ChatCompletionSerializer,
    EmbeddingsSerializer,
    GenerationCreateSerializer,
    GenerationSerializer,
    SentimentBatchSerializer,
    SentimentCreateSerializer,
    SentimentOneSerializer,
)
from project.errors import AppError
from project.schema import (
    ERROR_RESPONSES,
    IDEMPOTENCY_RESPONSES,
    UPSTREAM_RESPONSES,
    body_required,
    sse_response,
)

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def _note_tokens(request: Request, generation: Generation) -> None:
    """Tokens spent upstream, for the request log: none for an answer from the cache."""
    if not generation.cached:
        note_usage(
            request,
            model=generation.model,
            prompt_tokens=generation.prompt_tokens,
            completion_tokens=generation.completion_tokens,
        )


def _stream_finished(request: Request, generation: Generation | None, failure: AppError | None) -> None:
    """A stream ended: its tokens (None: its record could not be written), and how it failed if
    it did, for its request-log row."""
    if generation is not None:
        _note_tokens(request, generation)
    if failure is not None:
        note_failure(request, status=failure.status_code, code=failure.code)


def _streamed(
    request: Request, generation: text_services.GenerationRequest, render: text_services.StreamRenderer
) -> StreamingHttpResponse:
    """Server-Sent Events from the upstream's stream, its tokens noted for the request log when
    it ends (the service charges them to the key's budget)."""
    events = text_services.completion_stream(
        user=authenticated_user(request),
        request=generation,
        render=render,
        api_key=request.auth,
        on_finish=functools.partial(_stream_finished, request),
    )
    response = StreamingHttpResponse(events, content_type="text/event-stream")
    for name, value in SSE_HEADERS.items():
        response[name] = value
    return response


def _completion(request: Request, generation: text_services.GenerationRequest) -> text_services.CompletionAnswer:
    """A non-streamed completion within the key's limits, its tokens noted for the request log."""
    answer = text_services.completion_create(user=authenticated_user(request), request=generation, api_key=request.auth)
    _note_tokens(request, answer.generation)
    return answer


def _sentiment_lease() -> str:
    local = settings.SENTIMENT_BACKEND == "local"
    return "IDEMPOTENCY_LEASE_SECONDS" if local else "IDEMPOTENCY_UPSTREAM_LEASE_SECONDS"


class SentimentViewSet(viewsets.GenericViewSet):
    serializer_class = SentimentCreateSerializer

    @property
    def rate_limit_group(self) -> str:
        # Asking an upstream costs like a generation: the same, tighter limit.
        return "default" if settings.SENTIMENT_BACKEND == "local" else "generation"

    @extend_schema(
        summary="Sentiment of one text or a batch",
        request=SentimentCreateSerializer,
        examples=[
            OpenApiExample("One text", value={"text": "I love this phone."}, request_only=True),
            OpenApiExample("A batch", value={"texts": ["Great service!", "Never again."]}, request_only=True),
        ],
        responses={
            201: PolymorphicProxySerializer(
                component_name="SentimentAnswer",
                serializers=[SentimentOneSerializer, SentimentBatchSerializer],
                resource_type_field_name=None,
            ),
            **ERROR_RESPONSES,
            **IDEMPOTENCY_RESPONSES,
            **UPSTREAM_RESPONSES,
        },
    )
    @body_required
    @idempotent(lease_setting=_sentiment_lease, texts=True)
    def create(self, request: Request) -> Response:
        params = SentimentCreateSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        data = params.validated_data
        texts = data["texts"] if "texts" in data else [data["text"]]
        tally = sentiment.Tally()
        try:
            call, results = text_services.sentiment_create(
                user=authenticated_user(request), texts=texts, api_key=request.auth, tally=tally
            )
        finally:
            # What the upstream was paid, answered or not: tokens are only ever spent with the
            # sentiment model (a hybrid call that fell back to VADER may have spent some first).
            spent = tally.prompt_tokens + tally.completion_tokens
            note_usage(
                request,
                model=settings.SENTIMENT_OPENAI_MODEL if spent else "",
                prompt_tokens=tally.prompt_tokens,
                completion_tokens=tally.completion_tokens,
            )
        body = {"id": call.pk, "results": results} if "texts" in data else {"id": call.pk, **results[0]}
        return Response(body, status=status.HTTP_201_CREATED)


class GenerationViewSet(viewsets.GenericViewSet):
    serializer_class = GenerationCreateSerializer
    rate_limit_group = "generation"

    @extend_schema(
        summary="Generate text (with stream: true, Server-Sent Events: `delta` events then `done`)",
        description="400 also when prompt and system together are over the prompt limit.",
        request=GenerationCreateSerializer,
        examples=[
            OpenApiExample(
                "A generation", value={"prompt": "A haiku about the sea.", "max_tokens": 64}, request_only=True
            ),
            OpenApiExample("Streamed", value={"prompt": "A haiku about the sea.", "stream": True}, request_only=True),
        ],
        responses={
            201: GenerationSerializer,
            (200, "text/event-stream"): sse_response(
                events=["delta", "done", "error"],
                description='With "stream": true: `delta` events ({"text"}), then `done` ({"id", "model", '
                '"finish_reason", "usage", "cached"}), or `error` ({"error": {...}}) if the upstream fails midway.',
            ),
            **ERROR_RESPONSES,
            **IDEMPOTENCY_RESPONSES,
            **UPSTREAM_RESPONSES,
        },
    )
    @idempotent(lease_setting="IDEMPOTENCY_UPSTREAM_LEASE_SECONDS", texts=True)
    def create(self, request: Request) -> Response | StreamingHttpResponse:
        params = GenerationCreateSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        data = dict(params.validated_data)
        stream = data.pop("stream")
        generation = text_services.GenerationRequest(
            route="generations", params=text_services.generation_request(**data), stream=stream
        )
        if stream:
            return _streamed(request, generation, text_services.GenerationEvents())
        answer = _completion(request, generation)
        body = {
            "id": answer.generation.pk,
            "text": answer.text,
            "model": answer.generation.model,
            "finish_reason": answer.generation.finish_reason,
            "usage": llm.usage_from_dict(answer.completion.get("usage")).as_dict(),
            "cached": answer.cached,
        }
        return Response(body, status=status.HTTP_201_CREATED)


class OpenAIModelsView(APIView):
    """GET /v1/models: the upstream's models, in OpenAI's shape."""

    @extend_schema(
        summary="OpenAI-compatible: list models", responses={200: dict, **ERROR_RESPONSES, **UPSTREAM_RESPONSES}
    )
    def get(self, request: Request) -> Response:
        # The upstream's list changes rarely: one call per MODELS_CACHE_SECONDS, not per request.
        key = cache_key("models", base_url=settings.OPENAI_BASE_URL)
        models = cached_answer(key)
        if models is None:
            models = llm.models_list()
            remember_answer(key, models, seconds=settings.MODELS_CACHE_SECONDS)
        return Response({"object": "list", "data": models})


class OpenAIChatCompletionsView(APIView):
    """POST /v1/chat/completions, proxied to the configured upstream with this service's keys,
    limits and usage records."""

    rate_limit_group = "generation"

    @extend_schema(
        summary="OpenAI-compatible: chat completion (stream: true for Server-Sent Events)",
        description="400 also when the messages hold more than the prompt limit of characters in all, or when "
        "the upstream refuses the request (an unknown model, too long a prompt for its context).",
        request=ChatCompletionSerializer,
        examples=[
            OpenApiExample("A chat", value={"messages": [{"role": "user", "content": "Hello!"}]}, request_only=True),
            OpenApiExample(
                "Streamed, with usage",
                value={
                    "messages": [{"role": "user", "content": "Hello!"}],
                    "stream": True,
                    "stream_options": {"include_usage": True},
                },
                request_only=True,
            ),
        ],
        responses={
            (200, "application/json"): dict,
            (200, "text/event-stream"): sse_response(
                events=["message"],
                description='With "stream": true: OpenAI\'s chat.completion.chunk objects, then [DONE].',
            ),
            **ERROR_RESPONSES,
            **IDEMPOTENCY_RESPONSES,
            **UPSTREAM_RESPONSES,
        },
    )
    @idempotent(lease_setting="IDEMPOTENCY_UPSTREAM_LEASE_SECONDS", texts=True)
    def post(self, request: Request) -> Response | StreamingHttpResponse:
        params = ChatCompletionSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        # An explicit null is "not given" (the SDKs send it so): not passed on.
        data = {name: value for name, value in params.validated_data.items() if value is not None}
        stream = data.pop("stream", False)
        include_usage = bool((data.pop("stream_options", None) or {}).get("include_usage"))
        data.setdefault("model", settings.OPENAI_MODEL)
        generation = text_services.GenerationRequest(route="chat.completions", params=data, stream=stream)
        if stream:
            return _streamed(request, generation, text_services.OpenAIEvents(include_usage=include_usage))
        answer = _completion(request, generation)
        return Response(answer.completion)


class OpenAIEmbeddingsView(APIView):
    """POST /v1/embeddings, proxied to the configured upstream with this service's keys, limits,
    budgets, cache and records."""

    rate_limit_group = "generation"

    @extend_schema(
        summary="OpenAI-compatible: embeddings of one text or a batch",
        request=EmbeddingsSerializer,
        examples=[OpenApiExample("Two texts", value={"input": ["hello", "world"]}, request_only=True)],
        responses={(200, "application/json"): dict, **ERROR_RESPONSES, **IDEMPOTENCY_RESPONSES, **UPSTREAM_RESPONSES},
    )
    @idempotent(lease_setting="IDEMPOTENCY_UPSTREAM_LEASE_SECONDS", texts=True)
    def post(self, request: Request) -> Response:
        params = EmbeddingsSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        data = {name: value for name, value in params.validated_data.items() if value is not None}
        data["model"] = data.get("model") or settings.OPENAI_EMBEDDING_MODEL
        answer = text_services.embeddings_create(user=authenticated_user(request), params=data, api_key=request.auth)
        _note_tokens(request, answer.generation)
        return Response(answer.answer)
