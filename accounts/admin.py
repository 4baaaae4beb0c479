from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import GroupAdmin, UserAdmin
from django.contrib.auth.models import Group
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest

from accounts.keys import key_generate
from accounts.login_guard import LoginRefused, login_attempt
from accounts.models import ApiKey, RevokedToken
from accounts.permissions import authenticated_user
from accounts.policies import ELEVATED_USER_FIELDS, key_owner_refusal, may_edit_user
from accounts.ratelimits import rate_is_valid
from accounts.services import api_key_limits_saved, api_key_revoke
from accounts.spend import UNREADABLE, spend_of
from project.http import client_ip


@admin.register(RevokedToken)
class RevokedTokenAdmin(admin.ModelAdmin):
    list_display = ("jti", "revoked_at", "expires_at")
    search_fields = ("=jti",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


LIMIT_FIELDS = ("token_budget_tokens", "token_budget_period", "tokens_per_minute", "max_parallel")


class ApiKeyForm(forms.ModelForm):
    class Meta:
        model = ApiKey
        fields = ["user", "name", "rate", "expires_at", *LIMIT_FIELDS]

    creator: Any = None  # who is making the key: set per request by ApiKeyAdmin.get_form

    def clean_user(self) -> Any:
        owner = self.cleaned_data.get("user")
        if owner is not None and (refusal := key_owner_refusal(creator=self.creator, owner=owner)) is not None:
            raise forms.ValidationError(refusal)
        return owner

    def clean_rate(self) -> str:
        rate = self.cleaned_data.get("rate", "")
        if rate and not rate_is_valid(rate):
            raise forms.ValidationError('Expected a rate like "100/m": a count, "/", then s, m, h or d.')
        return rate

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if (data.get("token_budget_tokens") is None) != (not data.get("token_budget_period")):
            raise forms.ValidationError("A token budget needs both its tokens and its period (a day or a month).")
        for name in LIMIT_FIELDS:
            if data.get(name) == 0:  # as the API: at least 1 (0 would refuse every call)
                self.add_error(name, "At least 1; leave it empty for no limit.")
        return data


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    """Staff make keys here too; the full key is shown once, in the message after saving."""

    form = ApiKeyForm
    list_display = (
        "name",
        "prefix",
        "user",
        "rate",
        "budget_left",
        "created_at",
        "expires_at",
        "revoked_at",
        "last_used_at",
    )
    list_filter = ("revoked_at", "expires_at")
    search_fields = ("=prefix", "name", "=user__username")
    list_select_related = ("user",)
    readonly_fields = ("prefix", "created_at", "created_by", "revoked_at", "last_used_at")
    actions = ["revoke"]

    def get_form(self, request: HttpRequest, obj: ApiKey | None = None, change: bool = False, **kwargs: Any) -> Any:
        form = super().get_form(request, obj, change=change, **kwargs)
        # The form checks the owner against who is making the key: the API's rule, not a copy.
        return type(form.__name__, (form,), {"creator": request.user})

    def get_fields(self, request: HttpRequest, obj: ApiKey | None = None) -> tuple[str, ...]:
        fields = ("user", "name", "rate", "expires_at", *LIMIT_FIELDS)
        return fields if obj is None else (*fields, *self.readonly_fields)

    def get_readonly_fields(self, request: HttpRequest, obj: ApiKey | None = None) -> tuple[str, ...]:
        return self.readonly_fields if obj is None else ("user", *self.readonly_fields)

    @admin.display(description="budget left")
    def budget_left(self, api_key: ApiKey) -> str:
        """This period's remaining tokens of the key's budget (one Redis read a row)."""
        try:
            found = spend_of(api_key)
        except UNREADABLE:
            return "unavailable"
        if found is None:
            return "—"
        return f"{found['remaining']:,} of {found['budget']:,} this {found['period']}"

    def save_model(self, request: HttpRequest, obj: ApiKey, form: Any, change: bool) -> None:
        if change:
            before = (form.initial.get("token_budget_tokens") is not None, form.initial.get("token_budget_period"))
            super().save_model(request, obj, form, change)
            api_key_limits_saved(api_key=obj, budget_before=before)  # the API's rule
            return
        new = key_generate()
        obj.prefix, obj.key_hash, obj.created_by = new.prefix, new.key_hash, authenticated_user(request)
        super().save_model(request, obj, form, change)
        self.message_user(
            request,
            f"The key for “{obj.name}” is {new.key} — copy it now: it is not stored and will not be shown again.",
            messages.WARNING,
        )

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False  # revoke instead: the request log keeps pointing at the key

    @admin.action(description="Revoke the selected keys")
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        for api_key in queryset:
            api_key_revoke(api_key=api_key)
        self.message_user(request, f"Revoked {queryset.count()} key(s).", messages.SUCCESS)


# --- users and groups ------------------------------------------------------------------


class GuardedUserAdmin(UserAdmin):
    """Django's user admin lets anyone with `change_user` make themselves a superuser. Here only
    a superuser changes staff or superuser accounts, or anyone's status, groups or permissions."""

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        fields = tuple(super().get_readonly_fields(request, obj))
        return fields if request.user.is_superuser else (*fields, *ELEVATED_USER_FIELDS)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        allowed = super().has_change_permission(request, obj)
        return allowed and (obj is None or may_edit_user(editor=request.user, user=obj))

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        allowed = super().has_delete_permission(request, obj)
        return allowed and (obj is None or may_edit_user(editor=request.user, user=obj))

    def user_change_password(self, request: HttpRequest, id: str, form_url: str = "") -> Any:
        user = self.get_object(request, id)
        if user is not None and not may_edit_user(editor=request.user, user=user):
            raise PermissionDenied
        return super().user_change_password(request, id, form_url)


class SuperuserOnlyGroupAdmin(GroupAdmin):
    """A group's permissions are power: only a superuser hands them out."""

    def has_module_permission(self, request: HttpRequest) -> bool:
        return request.user.is_superuser

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.is_superuser

    def has_add_permission(self, request: HttpRequest) -> bool:
        return request.user.is_superuser

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.is_superuser

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.is_superuser


for _model, _admin in ((get_user_model(), GuardedUserAdmin), (Group, SuperuserOnlyGroupAdmin)):
    if admin.site.is_registered(_model):
        admin.site.unregister(_model)
    admin.site.register(_model, _admin)


class GuardedAdminLoginForm(AdminAuthenticationForm):
    """The admin's login, under the same failed-login limits as the token route: staff and
    superuser passwords are typed here."""

    def clean(self) -> dict[str, Any]:
        username = self.cleaned_data.get("username")
        if not username or self.cleaned_data.get("password") is None:
            return super().clean()  # a field is missing: no password is judged
        address = client_ip(self.request) if self.request is not None else ""
        try:
            with login_attempt(username=username, address=address or "unknown", failures=(ValidationError,)):
                return super().clean()
        except LoginRefused as refused:
            minutes = max(1, round((refused.wait or 60) / 60))
            raise ValidationError(f"Too many failed logins; try again in {minutes} minutes.") from None


admin.site.login_form = GuardedAdminLoginForm
