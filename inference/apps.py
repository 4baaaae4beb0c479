from django.apps import AppConfig


class InferenceConfig(AppConfig):
    name = "inference"
    verbose_name = "Models and predictions"

    def ready(self) -> None:
        from inference import signals

        signals.connect()
