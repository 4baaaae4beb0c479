"""JSON in and out with orjson.

orjson rejects NaN and Infinity, numbers that overflow a double, and nesting deeper than
1,024 levels, each as a ValueError; the standard library's parser accepts the first two and
overflows the stack on the last (a 500). It is also several times faster on large batches.
The body is read against MAX_REQUEST_BODY_BYTES, which DRF does not enforce for JSON.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import orjson
from django.conf import settings
from django.utils.functional import Promise
from rest_framework.exceptions import ParseError
from rest_framework.parsers import BaseParser
from rest_framework.renderers import BaseRenderer

from project.errors import PayloadTooLarge


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, Promise):  # lazy translation strings in DRF's messages
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def dumps(data: Any) -> bytes:
    return orjson.dumps(data, default=_default, option=orjson.OPT_SERIALIZE_NUMPY)


class JSONParser(BaseParser):
    media_type = "application/json"

    def parse(self, stream: Any, media_type: str | None = None, parser_context: dict | None = None) -> Any:
        limit = settings.MAX_REQUEST_BODY_BYTES
        raw = stream.read(limit + 1) if stream is not None else b""
        if len(raw) > limit:
            raise PayloadTooLarge(f"Request body is over the limit of {limit} bytes.")
        encoding = (parser_context or {}).get("encoding") or "utf-8"
        try:
            if encoding.lower().replace("-", "") != "utf8":
                raw = raw.decode(encoding).encode()
            if b"\\u0000" in raw:
                # PostgreSQL can store NUL in neither text nor jsonb: refuse it here, once.
                raise ParseError("NUL characters (\\u0000) are not accepted.")
            return orjson.loads(raw)
        except (LookupError, UnicodeError):
            raise ParseError(f"Unsupported or wrong charset {encoding!r}.") from None
        except orjson.JSONDecodeError as exc:
            raise ParseError(f"Malformed JSON: {exc}") from None


class JSONRenderer(BaseRenderer):
    media_type = "application/json"
    format = "json"
    charset = None  # JSON is UTF-8 by definition

    def render(self, data: Any, accepted_media_type: str | None = None, renderer_context: dict | None = None) -> bytes:
        if data is None:
            return b""
        return dumps(data)
