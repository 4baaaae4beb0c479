from typing import Any

from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from accounts.models import ApiKey


class IsStaff(BasePermission):
    message = "Only staff can do this."

    def has_permission(self, request: Request, view: Any) -> bool:
        return bool(request.user and request.user.is_staff)


class NotWithApiKey(BasePermission):
    """Keys are managed by a person (a JWT), never by a key: a leaked staff key must not be
    able to mint more keys that outlive its own revocation."""

    message = "API keys are managed with a user's token, not with an API key."

    def has_permission(self, request: Request, view: Any) -> bool:
        return not isinstance(request.auth, ApiKey)
