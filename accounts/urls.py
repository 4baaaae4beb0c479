from django.urls import re_path

from accounts import views
from project.routers import OptionalSlashRouter

router = OptionalSlashRouter()
router.register("api-keys", views.ApiKeyViewSet, basename="api-key")

# Trailing slashes optional, as on every API route: a POST must not be lost to a redirect.
urlpatterns = [
    re_path(r"^auth/token/?$", views.TokenObtainView.as_view(), name="token-obtain"),
    re_path(r"^auth/token/refresh/?$", views.TokenRefreshView.as_view(), name="token-refresh"),
    re_path(r"^auth/logout/?$", views.LogoutView.as_view(), name="logout"),
    *router.urls,
]
