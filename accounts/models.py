from django.db import models


class RevokedToken(models.Model):
    """A refresh token that was logged out or rotated away.

    Only the token's id (jti) is kept, never the token: a jti cannot be used to log in.
    Rows past `expires_at` are useless (the token would be refused as expired anyway) and
    `manage.py prune_revoked_tokens` deletes them.
    """

    jti = models.CharField(max_length=255, unique=True)
    expires_at = models.DateTimeField(db_index=True)
    revoked_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.jti
