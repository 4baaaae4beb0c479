"""Serializer fields that take a JSON body's types as they are, and query parameters as given.

DRF's own fields coerce: "5" becomes 5, 5 becomes "5", "yes" becomes True. For a JSON API that
hides client bugs (a model called "5", a stream asked for with a string), so every input
serializer uses these instead: the wrong JSON type is a 400 naming the field. Likewise DRF takes
an empty query parameter as a missing one; the Query* fields refuse it.
"""

from __future__ import annotations

from typing import Any

from rest_framework import serializers
from rest_framework.utils import html


class StrictCharField(serializers.CharField):
    """A string, never a number or a boolean turned into text; taken as sent. DRF trims a string
    before its length and pattern are checked, so " " + 100 characters passed a limit of 100 and
    " iris" a model-name pattern, both of which the OpenAPI document (and any client checking
    against it) calls invalid. Here only blankness is judged trimmed (a field that may not be
    blank refuses one of only whitespace); the value checked and used is the one sent."""

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return data


class StrictIntegerField(serializers.IntegerField):
    """A JSON integer: not a string of digits, not 5.0, not true."""

    def to_internal_value(self, data: Any) -> int:
        if type(data) is not int:
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictFloatField(serializers.FloatField):
    """A JSON number: not a string of digits, not true."""

    def to_internal_value(self, data: Any) -> float:
        if type(data) not in (int, float):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictBooleanField(serializers.BooleanField):
    """true or false: not "yes", not 1."""

    default_error_messages = {"invalid": "Must be true or false."}

    def to_internal_value(self, data: Any) -> bool:
        if type(data) is not bool:
            self.fail("invalid")
        return data


class _EmptyIsGiven(serializers.Field):
    """A query parameter given empty (`?until=`) is judged as given, not taken as absent (DRF's
    way with form data): an empty date or name is a 400, not a filter silently dropped."""

    def get_value(self, dictionary: Any) -> Any:
        if html.is_html_input(dictionary) and dictionary.get(self.field_name) == "":
            return ""
        return super().get_value(dictionary)


class QueryCharField(_EmptyIsGiven, StrictCharField):
    """A string query parameter, taken as given (not trimmed); given empty, it is blank (a 400
    unless allow_blank)."""


class QueryDateTimeField(_EmptyIsGiven, serializers.DateTimeField):
    """An ISO 8601 query parameter; given empty, it is not a date (a 400)."""


class QueryChoiceField(_EmptyIsGiven, serializers.ChoiceField):
    """One of the choices; given empty, it is none of them (a 400)."""
