"""The Open Inference Protocol v2 routes, under /v2/ (the server's own metadata is /v2 itself).

No trailing slashes, as the protocol spells them. A model is `name` or `name@alias`; its version
segment is a number or an alias label.
"""

from django.urls import path

from inference import oip_views

urlpatterns = [
    path("health/live", oip_views.ServerLiveView.as_view(), name="health-live"),
    path("health/ready", oip_views.ServerReadyView.as_view(), name="health-ready"),
    path("models/<str:name>", oip_views.ModelMetadataView.as_view(), name="model-metadata"),
    path("models/<str:name>/ready", oip_views.ModelReadyView.as_view(), name="model-ready"),
    path("models/<str:name>/infer", oip_views.InferView.as_view(), name="model-infer"),
    path("models/<str:name>/versions/<str:version>", oip_views.ModelMetadataView.as_view(), name="version-metadata"),
    path("models/<str:name>/versions/<str:version>/ready", oip_views.ModelReadyView.as_view(), name="version-ready"),
    path("models/<str:name>/versions/<str:version>/infer", oip_views.InferView.as_view(), name="version-infer"),
]
