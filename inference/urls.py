from rest_framework.routers import SimpleRouter

from inference import views

# Trailing slashes optional: a POST to /predictions must not be lost to a redirect.
router = SimpleRouter(trailing_slash="/?")
router.register("models", views.ModelViewSet, basename="model")
router.register("predictions", views.PredictionViewSet, basename="prediction")

urlpatterns = router.urls
