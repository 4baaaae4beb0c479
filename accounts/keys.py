"""API key format and hashing.

A key looks like `mlsk_<prefix>_<secret>`: the fixed `mlsk_` start tells it apart from a JWT
(so both can arrive as `Authorization: Bearer ...`), the 8-character prefix finds its row with
one indexed lookup and is safe to show, and the 40-character secret (~238 bits) is what makes it
unguessable. Because the secret is random and long, SHA-256 is enough to store it safely; a
slow password hash would only add milliseconds to every request.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from django.utils.crypto import get_random_string

KEY_START = "mlsk_"
PREFIX_LENGTH = 8
SECRET_LENGTH = 40
_ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
_FULL_LENGTH = len(KEY_START) + PREFIX_LENGTH + 1 + SECRET_LENGTH


@dataclass(frozen=True)
class NewKey:
    key: str
    prefix: str
    key_hash: str


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def key_generate() -> NewKey:
    prefix = get_random_string(PREFIX_LENGTH, _ALPHABET)
    key = f"{KEY_START}{prefix}_{get_random_string(SECRET_LENGTH, _ALPHABET)}"
    return NewKey(key=key, prefix=prefix, key_hash=key_hash(key))


def looks_like_key(value: str) -> bool:
    return value.startswith(KEY_START)


def key_prefix(key: str) -> str | None:
    """The prefix of a well-formed key, or None."""
    if len(key) != _FULL_LENGTH or not key.startswith(KEY_START) or key[len(KEY_START) + PREFIX_LENGTH] != "_":
        return None
    return key[len(KEY_START) : len(KEY_START) + PREFIX_LENGTH]


def key_matches(key: str, stored_hash: str) -> bool:
    return hmac.compare_digest(key_hash(key), stored_hash)
