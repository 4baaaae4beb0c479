from django.apps import AppConfig


class InferenceConfig(AppConfig):
    name = "inference"
    verbose_name = "Models and predictions"

    def ready(self) -> None:
        from django.conf import settings

        from accounts import spend
        from analytics.dashboard import register_charts
        from inference import schema, signals  # noqa: F401  schema: registers OpenAPI extensions
        from inference.budgets import forget_spend
        from inference.budgets import spend as budget_spend
        from inference.readiness import models_ready
        from inference.rollout_charts import rollout_charts
        from project.health import register_readiness_check

        signals.connect()
        register_charts(rollout_charts)
        spend.register(budget_spend, forget_spend)
        register_readiness_check("models", lambda: models_ready(default_model=settings.DEFAULT_MODEL))
