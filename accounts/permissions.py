from typing import Any

from django.contrib.auth.models import User
from django.http import HttpRequest
from rest_framework.exceptions import NotAuthenticated
from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from accounts.models import ApiKey


def authenticated_user(request: HttpRequest) -> User:
    """The signed-in user, in a view only signed-in users reach (behind IsAuthenticated, or the
    admin's staff check): the services take a User, never an anonymous one."""
    user = request.user
    if not isinstance(user, User):
        raise NotAuthenticated()
    return user


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
