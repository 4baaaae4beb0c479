from inference import text_views, views
from project.routers import OptionalSlashRouter

router = OptionalSlashRouter()
router.register("models", views.ModelViewSet, basename="model")
router.register("predictions", views.PredictionViewSet, basename="prediction")
router.register("sentiment", text_views.SentimentViewSet, basename="sentiment")
router.register("generations", text_views.GenerationViewSet, basename="generation")

urlpatterns = router.urls
