from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = "Accounts and API keys"

    def ready(self) -> None:
        from accounts import checks, schema, signals  # noqa: F401  registers system checks and OpenAPI extensions

        signals.connect()
