"""The OpenAI-compatible routes, mounted at /v1/ so the official SDKs can use base_url=".../v1"."""

from django.urls import re_path

from inference import text_views

urlpatterns = [
    re_path(r"^models/?$", text_views.OpenAIModelsView.as_view(), name="models"),
    re_path(r"^chat/completions/?$", text_views.OpenAIChatCompletionsView.as_view(), name="chat-completions"),
]
