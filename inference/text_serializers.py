"""Input and output shapes of the sentiment, generation and OpenAI-compatible routes."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from rest_framework import serializers

from project.errors import PayloadTooLarge
from project.fields import StrictBooleanField, StrictCharField, StrictFloatField, StrictIntegerField


def _bounded(count: int, *, limit: int, field: str, what: str) -> None:
    """A batch over its limit is too large rather than invalid: the same texts in smaller batches would do."""
    if count > limit:
        raise PayloadTooLarge(
            f"The request has {count} {what}; the limit is {limit}.", details={field: [f"at most {limit}"]}
        )


def _text_errors(text: Any) -> str | None:
    if not isinstance(text, str):
        return "Expected a string."
    if not text.strip():
        return "Must not be empty or blank."
    if len(text) > settings.SENTIMENT_MAX_CHARS:
        return f"At most {settings.SENTIMENT_MAX_CHARS} characters."
    return None


class SentimentCreateSerializer(serializers.Serializer):
    text = serializers.JSONField(required=False, help_text="One text.")
    texts = serializers.JSONField(required=False, help_text="A batch of texts.")

    def validate_text(self, value: Any) -> str:
        if (problem := _text_errors(value)) is not None:
            raise serializers.ValidationError(problem)
        return value

    def validate_texts(self, value: Any) -> list[str]:
        if not isinstance(value, list) or not value:
            raise serializers.ValidationError("Expected a non-empty array of strings.")
        _bounded(len(value), limit=settings.SENTIMENT_MAX_TEXTS, field="texts", what="texts")
        problems = [f"text {i}: {p}" for i, t in enumerate(value) if (p := _text_errors(t)) is not None]
        if problems:
            raise serializers.ValidationError(problems[:10])
        return value

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if ("text" in attrs) == ("texts" in attrs):
            message = "Send exactly one of 'text' or 'texts'."
            raise serializers.ValidationError({"text": [message], "texts": [message]})
        return attrs


class SentimentResultSerializer(serializers.Serializer):
    sentiment = serializers.ChoiceField(choices=["positive", "negative", "neutral"])
    confidence = serializers.FloatField(min_value=0, max_value=1)
    scores = serializers.DictField(child=serializers.FloatField())
    backend = serializers.CharField()
    cached = serializers.BooleanField()


class SentimentOneSerializer(SentimentResultSerializer):
    id = serializers.IntegerField()


class SentimentBatchSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    results = SentimentResultSerializer(many=True)


def validate_max_tokens(value: int) -> None:
    """A field validator: DRF runs it on given values only, never on null."""
    ceiling = settings.GENERATION_MAX_TOKENS_LIMIT
    if value > ceiling:
        raise serializers.ValidationError(f"At most {ceiling}.")


class GenerationCreateSerializer(serializers.Serializer):
    prompt = StrictCharField(trim_whitespace=False)
    max_tokens = StrictIntegerField(required=False, min_value=1, validators=[validate_max_tokens])
    temperature = StrictFloatField(required=False, min_value=0, max_value=2)
    system = StrictCharField(required=False, allow_blank=True, trim_whitespace=False)
    stream = StrictBooleanField(required=False, default=False)

    def validate_prompt(self, value: str) -> str:
        if not value.strip():
            raise serializers.ValidationError("Must not be blank.")
        if len(value) > settings.GENERATION_MAX_PROMPT_CHARS:
            raise serializers.ValidationError(f"At most {settings.GENERATION_MAX_PROMPT_CHARS} characters.")
        return value

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        limit = settings.GENERATION_MAX_PROMPT_CHARS
        if len(attrs["prompt"]) + len(attrs.get("system", "")) > limit:
            raise serializers.ValidationError({"system": [f"Prompt and system together: at most {limit} characters."]})
        return attrs


class TokenUsageSerializer(serializers.Serializer):
    prompt_tokens = serializers.IntegerField()
    completion_tokens = serializers.IntegerField()
    total_tokens = serializers.IntegerField()


class GenerationSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    text = serializers.CharField()
    model = serializers.CharField()
    finish_reason = serializers.CharField()
    usage = TokenUsageSerializer()
    cached = serializers.BooleanField()


# --- OpenAI-compatible --------------------------------------------------------------


MAX_MESSAGES = 2048
MAX_TOOLS = 128


class ChatMessageSerializer(serializers.Serializer):
    """One message, checked as OpenAI checks it, so a malformed one is our 400 before the upstream
    is paid: every role but the assistant's needs content; a tool's answer names its call."""

    role = serializers.ChoiceField(choices=["system", "developer", "user", "assistant", "tool"])
    content = serializers.JSONField(required=False, allow_null=True)
    name = StrictCharField(required=False, max_length=64)
    tool_call_id = StrictCharField(required=False, max_length=100)
    tool_calls = serializers.JSONField(required=False)

    def validate_content(self, value: Any) -> Any:
        if value is None or isinstance(value, str):
            return value
        if isinstance(value, list) and all(isinstance(part, dict) for part in value):
            return value  # content parts ({"type": "text", ...}), passed on as they are
        raise serializers.ValidationError("Expected a string or an array of content parts.")

    def validate_tool_calls(self, value: Any) -> Any:
        if not isinstance(value, list) or not all(isinstance(call, dict) for call in value):
            raise serializers.ValidationError("Expected an array of tool calls.")
        return value

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        role, content = attrs["role"], attrs.get("content")
        if role == "assistant":
            if content is None and not attrs.get("tool_calls"):
                raise serializers.ValidationError({"content": ["An assistant message needs content or tool_calls."]})
        elif content is None:
            raise serializers.ValidationError({"content": [f"A {role} message needs content."]})
        if role == "tool" and not attrs.get("tool_call_id"):
            raise serializers.ValidationError({"tool_call_id": ["A tool message names the call it answers."]})
        return attrs


class StreamOptionsSerializer(serializers.Serializer):
    include_usage = StrictBooleanField(required=False, default=False)


class ChatCompletionSerializer(serializers.Serializer):
    """The chat-completions parameters this gateway passes on; anything else is dropped."""

    model = StrictCharField(required=False, allow_null=True, max_length=100)
    # Bounded before any message is looked at: validating costs ~0.2 ms a message, and a 5 MB
    # body holds 150,000 of them (24 s of CPU before this limit).
    messages = ChatMessageSerializer(many=True, allow_empty=False, max_length=MAX_MESSAGES)  # type: ignore[call-arg]  # DRF takes it; its stubs do not say so
    max_tokens = StrictIntegerField(required=False, allow_null=True, min_value=1, validators=[validate_max_tokens])
    max_completion_tokens = StrictIntegerField(
        required=False, allow_null=True, min_value=1, validators=[validate_max_tokens]
    )
    temperature = StrictFloatField(required=False, allow_null=True, min_value=0, max_value=2)
    top_p = StrictFloatField(required=False, allow_null=True, min_value=0, max_value=1)
    n = StrictIntegerField(required=False, allow_null=True, min_value=1, max_value=8)
    stop = serializers.JSONField(required=False, allow_null=True)
    presence_penalty = StrictFloatField(required=False, allow_null=True, min_value=-2, max_value=2)
    frequency_penalty = StrictFloatField(required=False, allow_null=True, min_value=-2, max_value=2)
    seed = StrictIntegerField(required=False, allow_null=True, min_value=-(2**63), max_value=2**63 - 1)
    response_format = serializers.JSONField(required=False, allow_null=True)
    tools = serializers.JSONField(required=False, allow_null=True)
    tool_choice = serializers.JSONField(required=False, allow_null=True)
    user = StrictCharField(required=False, allow_null=True, max_length=200)
    stream = StrictBooleanField(required=False, allow_null=True, default=False)
    stream_options = StreamOptionsSerializer(required=False, allow_null=True)

    def validate_stop(self, value: Any) -> Any:
        if value is None or isinstance(value, str):
            return value
        if isinstance(value, list) and len(value) <= 4 and all(isinstance(item, str) for item in value):
            return value
        raise serializers.ValidationError("Expected a string or an array of at most 4 strings.")

    def validate_response_format(self, value: Any) -> Any:
        if value is not None and (not isinstance(value, dict) or not isinstance(value.get("type"), str)):
            raise serializers.ValidationError('Expected an object with a "type".')
        return value

    def validate_tools(self, value: Any) -> Any:
        if value is not None and not (isinstance(value, list) and all(isinstance(tool, dict) for tool in value)):
            raise serializers.ValidationError("Expected an array of tool objects.")
        if value is not None and len(value) > MAX_TOOLS:
            raise serializers.ValidationError(f"At most {MAX_TOOLS} tools.")
        return value

    def validate_tool_choice(self, value: Any) -> Any:
        if value is not None and not isinstance(value, (str, dict)):
            raise serializers.ValidationError("Expected a string or an object.")
        return value

    def validate_messages(self, value: list[dict[str, Any]]) -> list[dict[str, Any]]:
        # Content, and tool calls, count towards the prompt limit: both are sent to the upstream.
        size = sum(len(str(m.get("content") or "")) + len(str(m.get("tool_calls") or "")) for m in value)
        if size > settings.GENERATION_MAX_PROMPT_CHARS:
            raise serializers.ValidationError(f"At most {settings.GENERATION_MAX_PROMPT_CHARS} characters in all.")
        return value


class EmbeddingsSerializer(serializers.Serializer):
    """OpenAI's embeddings parameters: text in (one string or an array of them), vectors out."""

    input = serializers.JSONField(help_text="A string, or an array of strings (token arrays are not taken).")
    model = StrictCharField(required=False, allow_null=True, max_length=100)
    encoding_format = serializers.ChoiceField(choices=["float", "base64"], required=False, allow_null=True)
    dimensions = StrictIntegerField(required=False, allow_null=True, min_value=1, max_value=65_536)
    user = StrictCharField(required=False, allow_null=True, max_length=200)

    def validate_input(self, value: Any) -> list[str]:
        texts = [value] if isinstance(value, str) else value
        if not isinstance(texts, list) or not texts:
            raise serializers.ValidationError("Expected a string or a non-empty array of strings.")
        _bounded(len(texts), limit=settings.EMBEDDINGS_MAX_INPUTS, field="input", what="inputs")
        problems = [
            f"input {i}: {'expected a string' if not isinstance(t, str) else 'must not be empty'}"
            for i, t in enumerate(texts)
            if not isinstance(t, str) or not t
        ]
        if problems:
            raise serializers.ValidationError(problems[:10])
        if sum(map(len, texts)) > settings.EMBEDDINGS_MAX_CHARS:
            raise PayloadTooLarge(
                f"The inputs are over {settings.EMBEDDINGS_MAX_CHARS} characters in all.",
                details={"input": [f"at most {settings.EMBEDDINGS_MAX_CHARS} characters in all"]},
            )
        return texts
