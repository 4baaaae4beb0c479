from typing import Any

from rest_framework.permissions import BasePermission
from rest_framework.request import Request


class IsStaff(BasePermission):
    message = "Only staff can do this."

    def has_permission(self, request: Request, view: Any) -> bool:
        return bool(request.user and request.user.is_staff)
