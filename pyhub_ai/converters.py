"""A path converter for database ids that a crafted URL cannot push out of range.

Django's ``int`` converter accepts any number of digits; a value past the database's largest
integer (``9223372036854775808``, ``10**30``) then reaches the ORM, and a lookup or an
``get_or_create()`` on it raises ``OverflowError`` or a ``DataError``: a 500 instead of a 404.
``<pk:name>`` matches only 1 … 2**63 - 1 (the range of a ``BigAutoField``), so anything else
is "no such page" before a view runs. Registered when this module is imported (by
``pyhub_ai.urls``, or by a project's own ``urls.py``: ``import pyhub_ai.converters``).
"""
from __future__ import annotations

from django.urls import register_converter

#: The largest value of a ``BigAutoField`` (a signed 64-bit integer) on every database Django supports.
MAX_PK = 2**63 - 1


class PositiveBigIntConverter:
    """``<pk:name>``: a positive integer that fits a ``BigAutoField``; anything else does not match."""

    regex = "[0-9]{1,19}"

    def to_python(self, value: str) -> int:
        number = int(value)
        if not 0 < number <= MAX_PK:
            raise ValueError(f"{value} is not a database id")  # the URL does not match: a 404
        return number

    def to_url(self, value: int | str) -> str:
        return str(int(value))


register_converter(PositiveBigIntConverter, "pk")
