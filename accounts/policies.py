"""Who may give power to whom: the rules the API and the admin both apply, kept in one place.

A key acts as its owner, so a key for a staff account is a staff credential, and a key for a
superuser is a superuser's. Staff make keys for the people they serve; only a superuser makes keys
for staff or superusers. The same idea guards the user admin: a staff account that may edit users
edits ordinary accounts only, and never anyone's staff or superuser status, groups or permissions.
"""

from __future__ import annotations

from typing import Any

ELEVATED_USER_FIELDS = ("is_staff", "is_superuser", "groups", "user_permissions")


def is_elevated(user: Any) -> bool:
    return bool(user.is_staff or user.is_superuser)


def key_owner_refusal(*, creator: Any, owner: Any) -> str | None:
    """Why `creator` may not make a key for `owner`, or None when they may."""
    if not owner.is_active:
        return "This account is inactive."
    if is_elevated(owner) and not (creator is not None and creator.is_superuser):
        return "Only a superuser can make keys for staff accounts."
    return None


def may_edit_user(*, editor: Any, user: Any) -> bool:
    """Superusers edit anyone; anyone else with the permission, ordinary accounts only."""
    return bool(editor.is_superuser or not is_elevated(user))
