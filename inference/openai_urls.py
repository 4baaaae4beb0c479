"""The OpenAI-compatible routes, mounted at /v1/ so the official SDKs can use base_url=".../v1".

No trailing slashes, exactly as OpenAI's own API (and so as every SDK) spells them.
"""

from django.urls import path

from inference import text_views

urlpatterns = [
    path("models", text_views.OpenAIModelsView.as_view(), name="models"),
    path("chat/completions", text_views.OpenAIChatCompletionsView.as_view(), name="chat-completions"),
    path("embeddings", text_views.OpenAIEmbeddingsView.as_view(), name="embeddings"),
]
