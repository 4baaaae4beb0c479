"""JSON in and out with orjson.

orjson rejects NaN and Infinity and numbers that overflow a double (the standard library's
parser accepts them), and is several times faster on large batches. On top of it, a body is
refused when it is over MAX_REQUEST_BODY_BYTES (which DRF does not enforce for JSON), nested
deeper than MAX_JSON_DEPTH (DRF's JSONField re-serializes values with the standard library,
which overflows the stack well below orjson's own limit of 1,024), or holds a NUL character
(which PostgreSQL can store in neither text nor jsonb).
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from itertools import chain
from typing import Any

import orjson
from django.conf import settings
from django.utils.functional import Promise
from rest_framework.exceptions import ParseError
from rest_framework.parsers import BaseParser
from rest_framework.renderers import BaseRenderer

from project.errors import PayloadTooLarge
from project.request_bodies import CHUNKED

MAX_JSON_DEPTH = 64


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, Promise):  # lazy translation strings in DRF's messages
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


_INT64_MIN, _UINT64_MAX = -(2**63), 2**64 - 1


def _wide_ints_as_floats(value: Any) -> Any:
    if type(value) is int and not _INT64_MIN <= value <= _UINT64_MAX:
        return float(value)
    if isinstance(value, dict):
        return {key: _wide_ints_as_floats(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_wide_ints_as_floats(item) for item in value]
    return value


def dumps(data: Any) -> bytes:
    """JSON bytes; integers wider than 64 bits go out as the doubles they came in as.

    A client's 1e20 is a double, and jsonb keeps it as the exact numeric 100000000000000000000,
    which reads back as a Python int that orjson refuses. Every stored value must read back, so
    the one place that writes JSON answers writes such ints as doubles (JSON has one number type).
    Only a refused document pays for the second pass.
    """
    try:
        return orjson.dumps(data, default=_default, option=orjson.OPT_SERIALIZE_NUMPY)
    except orjson.JSONEncodeError as exc:
        if "64-bit" not in str(exc):
            raise
        return orjson.dumps(_wide_ints_as_floats(data), default=_default, option=orjson.OPT_SERIALIZE_NUMPY)


_CONTAINERS = frozenset((dict, list))


def _items(value: dict | list) -> Any:
    return value.values() if type(value) is dict else value


def _check_depth(data: Any) -> None:
    """The depth check alone, for bodies that cannot hold a NUL: one level at a time. A level's
    values are gathered and their types tested in one pass each, and the walk stops at the first
    level that holds no container, so a batch's numbers are never looked at one by one."""
    level, depth = [data], 1
    while True:
        if depth > MAX_JSON_DEPTH:
            raise ParseError(f"JSON is nested deeper than {MAX_JSON_DEPTH} levels.")
        children = list(chain.from_iterable(map(_items, level)))
        if _CONTAINERS.isdisjoint(map(type, children)):
            return
        level = [item for item in children if type(item) in _CONTAINERS]
        depth += 1


def _check_structure(data: Any) -> None:
    """Depth and NUL checks, iteratively (a recursive walk would be the stack overflow again)."""
    stack = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            raise ParseError(f"JSON is nested deeper than {MAX_JSON_DEPTH} levels.")
        if isinstance(value, dict):
            for key, item in value.items():
                if "\x00" in key:
                    raise ParseError("NUL characters (\\u0000) are not accepted.")
                if isinstance(item, (dict, list)):
                    stack.append((item, depth + 1))
                elif isinstance(item, str) and "\x00" in item:
                    raise ParseError("NUL characters (\\u0000) are not accepted.")
        elif isinstance(value, list):
            for item in value:
                if isinstance(item, (dict, list)):
                    stack.append((item, depth + 1))
                elif isinstance(item, str) and "\x00" in item:
                    raise ParseError("NUL characters (\\u0000) are not accepted.")
        elif isinstance(value, str) and "\x00" in value:
            raise ParseError("NUL characters (\\u0000) are not accepted.")


class JSONParser(BaseParser):
    media_type = "application/json"

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Mapping[str, Any] | None = None) -> Any:
        limit = settings.MAX_REQUEST_BODY_BYTES
        raw = stream.read(limit + 1) if stream is not None else b""
        request = (parser_context or {}).get("request")
        meta = request._request.META if request is not None else {}
        if meta.get(CHUNKED):  # sent in chunks: now its length is known (for the request log)
            meta["CONTENT_LENGTH"] = str(len(raw))
        if len(raw) > limit:
            raise PayloadTooLarge(f"Request body is over the limit of {limit} bytes.")
        encoding = (parser_context or {}).get("encoding") or "utf-8"
        try:
            if encoding.lower().replace("-", "") != "utf8":
                raw = raw.decode(encoding).encode()
            data = orjson.loads(raw)
        except (LookupError, UnicodeError):
            raise ParseError(f"Unsupported or wrong charset {encoding!r}.") from None
        except orjson.JSONDecodeError as exc:
            raise ParseError(f"Malformed JSON: {exc}") from None
        # A NUL can only arrive escaped (orjson refuses raw control characters), so a body
        # without the escape needs the depth check alone.
        if b"\\u0000" in raw:
            _check_structure(data)
        elif type(data) in _CONTAINERS:
            _check_depth(data)
        return data


class JSONRenderer(BaseRenderer):
    media_type = "application/json"
    format = "json"
    charset = None  # JSON is UTF-8 by definition

    def render(
        self, data: Any, accepted_media_type: str | None = None, renderer_context: Mapping[str, Any] | None = None
    ) -> bytes:
        if data is None:
            return b""
        return dumps(data)
