from django.contrib import admin

from accounts.models import RevokedToken


@admin.register(RevokedToken)
class RevokedTokenAdmin(admin.ModelAdmin):
    list_display = ("jti", "revoked_at", "expires_at")
    search_fields = ("=jti",)

    def has_add_permission(self, request: object) -> bool:
        return False

    def has_change_permission(self, request: object, obj: object = None) -> bool:
        return False
