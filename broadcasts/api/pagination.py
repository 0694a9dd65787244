"""Opaque keyset cursors: base64url of a small JSON array, so clients cannot depend on the inside.

A cursor is client input like any other: every value in it is checked for the shape this API
writes (a bounded ASCII string, a non-negative integer a column can hold, an aware timestamp,
an id) before a query sees it. Anything else is 400 ``validation_error`` on ``cursor``.
"""

import base64
import binascii
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson

from core.errors import ApplicationError
from core.ids import is_object_id

MAX_CURSOR_LENGTH = 200
_BASE64URL = re.compile(rf"[A-Za-z0-9_-]{{1,{MAX_CURSOR_LENGTH}}}")
# The index column is a PostgreSQL integer.
MAX_INDEX = 2**31 - 1
_LIMIT = re.compile(r"[0-9]{1,7}")

NOT_A_CURSOR = "Not a cursor this API returned."


class _Rejected(Exception):
    pass


def _invalid(name: str, message: str) -> ApplicationError:
    return ApplicationError(f"Invalid {name}.", details={name: [message]})


def cursor_encode(*values: Any) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(list(values))).decode().rstrip("=")


def index_value(value: Any) -> int:
    """A position in a broadcast's recipients array."""
    if type(value) is not int or not 0 <= value <= MAX_INDEX:
        raise _Rejected
    return value


def timestamp_value(value: Any) -> datetime:
    """An aware ISO 8601 instant, as ``created_at.isoformat()`` writes it."""
    if type(value) is not str or not 0 < len(value) <= 40 or not value.isascii():
        raise _Rejected
    try:
        instant = datetime.fromisoformat(value)
    except ValueError:
        raise _Rejected from None
    if instant.utcoffset() is None:
        raise _Rejected
    try:  # PostgreSQL takes offsets up to 15:59 only: compare in UTC (and refuse what overflows it)
        return instant.astimezone(UTC)
    except (OverflowError, ValueError):
        raise _Rejected from None


def object_id_value(value: Any) -> str:
    if not is_object_id(value):
        raise _Rejected
    return value


def cursor_decode(cursor: str | None, *, kinds: tuple[Callable[[Any], Any], ...]) -> list[Any] | None:
    """The values of a cursor made by ``cursor_encode``, each passed through its checker in ``kinds``
    (``index_value``, ``timestamp_value``, ``object_id_value``); 400 when any of it is off."""
    if cursor is None:
        return None
    try:
        if not _BASE64URL.fullmatch(cursor):
            raise _Rejected
        values = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if not isinstance(values, list) or len(values) != len(kinds):
            raise _Rejected
        return [check(value) for check, value in zip(kinds, values, strict=True)]
    except (_Rejected, ValueError, binascii.Error, orjson.JSONDecodeError):
        raise _invalid("cursor", NOT_A_CURSOR) from None


def limit_parse(raw: str | None, *, default: int, maximum: int) -> int:
    """``limit``: ASCII digits only, 1..maximum."""
    if raw is None:
        return default
    if not _LIMIT.fullmatch(raw) or not 1 <= int(raw) <= maximum:
        raise _invalid("limit", f"Must be an integer from 1 to {maximum}.")
    return int(raw)
