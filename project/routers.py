from rest_framework.routers import SimpleRouter


class OptionalSlashRouter(SimpleRouter):
    """Routes that match with or without the trailing slash.

    Without this, a POST to /api/v1/predictions would be redirected (and its body lost) or
    refused. DRF's own `trailing_slash` argument only takes "/" or "".
    """

    def __init__(self) -> None:
        super().__init__()
        self.trailing_slash = "/?"
