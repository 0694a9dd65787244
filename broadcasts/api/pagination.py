"""Opaque keyset cursors: base64url of a small JSON array, so clients cannot depend on the inside."""

import base64
import binascii
from typing import Any

import orjson

from core.errors import ApplicationError


def _invalid(name: str, message: str) -> ApplicationError:
    return ApplicationError(f"Invalid {name}.", details={name: [message]})


def cursor_encode(*values: Any) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(list(values))).decode().rstrip("=")


def cursor_decode(cursor: str | None, *, kinds: tuple[type, ...]) -> list[Any] | None:
    """The values of a cursor made by ``cursor_encode``, checked against ``kinds``; 400 otherwise."""
    if cursor is None:
        return None
    try:
        if len(cursor) > 200:
            raise ValueError
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        values = orjson.loads(raw)
    except (ValueError, binascii.Error, orjson.JSONDecodeError):
        raise _invalid("cursor", "Not a cursor this API returned.") from None
    if (
        not isinstance(values, list)
        or len(values) != len(kinds)
        or not all(type(v) is k for v, k in zip(values, kinds, strict=True))
    ):
        raise _invalid("cursor", "Not a cursor this API returned.")
    return values


def limit_parse(raw: str | None, *, default: int, maximum: int) -> int:
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise _invalid("limit", f"Must be an integer from 1 to {maximum}.") from None
    if not 1 <= value <= maximum:
        raise _invalid("limit", f"Must be an integer from 1 to {maximum}.")
    return value
