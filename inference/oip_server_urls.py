"""/v2 itself, the Open Inference Protocol's server metadata (its other routes: oip_urls.py)."""

from django.urls import path

from inference import oip_views

urlpatterns = [path("", oip_views.ServerMetadataView.as_view(), name="server")]
