"""Where a request goes: the API under /api/v1/, operations, the admin, and the schema.

Wiring only: every app is named by its URL module, never imported from here.
"""

from django.contrib import admin
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from project import error_handlers as errors
from project import health, metrics

api_v1 = [
    path("", include("accounts.urls")),
    path("", include("inference.urls")),
    path("", include("analytics.urls")),
]

urlpatterns = [
    path("api/v1/", include((api_v1, "v1"))),
    path("v1/", include(("inference.openai_urls", "openai"))),
    path("v2", include(("inference.oip_server_urls", "v2-server"))),
    path("v2/", include(("inference.oip_urls", "v2"))),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="docs"),
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", metrics.metrics_view, name="metrics"),
    path("admin/analytics/", include("analytics.admin_urls")),
    path("admin/", admin.site.urls),
    # Anything else under the API prefixes: a JSON 404, in DEBUG too (handler404 is not used then).
    re_path(r"^(api|v1|v2)/", errors.not_found_view, name="not-found"),
]

handler400 = errors.bad_request_view
handler403 = errors.permission_denied_view
handler404 = errors.not_found_view
handler500 = errors.server_error_view
