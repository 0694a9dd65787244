"""The one JSON reader of every request body: the API's, and Meta's webhooks.

orjson parses strictly (UTF-8 only, no NaN or Infinity, no lone surrogates, depth at most 1024).
On top of that a body is refused, with 400 ``validation_error`` naming the path, when

- it nests deeper than ``MAX_JSON_DEPTH``: orjson *writes* at most 254 levels, and whatever is
  accepted must be hashable (Idempotency-Key), storable (jsonb) and renderable again inside a
  response envelope, so the limit is kept far below that;
- a string or a key holds NUL (``\\u0000``): PostgreSQL text and jsonb cannot store it. A caller
  whose own validation checks NUL field by field (the bulk body, which reports every bad
  recipient at once) passes ``nul_check=False``.
"""

from typing import Any

import orjson
from rest_framework.exceptions import ParseError
from rest_framework.parsers import BaseParser

from core.errors import ApplicationError

# Levels of arrays/objects, the body itself being level 1. A bulk body uses 3 before meta_data,
# which thus gets 61 of its own; a response adds at most 3 around a stored value.
MAX_JSON_DEPTH = 64
_CONTAINERS = (dict, list)


class InvalidJSON(ParseError):
    default_code = "invalid_json"
    default_detail = "The request body is not valid JSON."


def _too_deep(value: Any) -> bool:
    """Whether any array/object sits deeper than MAX_JSON_DEPTH (iterative: no recursion limit)."""
    stack = [(value, 1)]
    pop, push = stack.pop, stack.append
    while stack:
        item, depth = pop()
        if depth > MAX_JSON_DEPTH:
            return True
        for child in item.values() if type(item) is dict else item:
            if type(child) is dict or type(child) is list:
                push((child, depth + 1))
    return False


def _first_fault(value: Any, path: str, depth: int, nul: bool = True) -> tuple[str, str] | None:
    """(path, message) of the first NUL or too-deep spot, depth first; None when clean.

    Only called once a fault is known to exist (or NUL is possible), and never deeper than the
    limit, so the recursion is bounded by MAX_JSON_DEPTH.
    """
    if isinstance(value, str):
        return (path, "May not contain NUL characters.") if nul and "\x00" in value else None
    if not isinstance(value, _CONTAINERS):
        return None
    if depth > MAX_JSON_DEPTH:
        return path, f"Nested deeper than {MAX_JSON_DEPTH} levels."
    if isinstance(value, dict):
        for key, child in value.items():
            child_path = f"{path}.{key}" if path != "body" else key
            if nul and "\x00" in key:
                return child_path.replace("\x00", "\\u0000"), "Keys may not contain NUL characters."
            fault = _first_fault(child, child_path, depth + 1, nul)
            if fault:
                return fault
    else:
        for index, child in enumerate(value):
            fault = _first_fault(child, f"{path}[{index}]", depth + 1, nul)
            if fault:
                return fault
    return None


def json_check(value: Any, *, nul_possible: bool = True) -> None:
    """Raises 400 ``validation_error`` for a body nested too deep or holding NUL, naming the path.

    ``nul_possible=False`` (the raw text had no ``\\u0000`` escape, or NUL is the caller's to check)
    skips the string scan: then it costs one walk over the containers only (~1.5 ms per MB of JSON).
    """
    if not isinstance(value, _CONTAINERS) or nul_possible or _too_deep(value):
        fault = _first_fault(value, "body", 1, nul_possible)
    else:
        fault = None
    if fault:
        path, message = fault
        raise ApplicationError("The request is invalid; see details.", details={path: [message]})


def json_parse(raw: bytes, *, nul_check: bool = True) -> Any:
    """The parsed body: 400 ``invalid_json`` when it is not JSON, 400 ``validation_error`` when it
    is JSON that cannot be stored and read back (too deep; NUL unless ``nul_check`` is off)."""
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidJSON(f"The request body is not valid JSON: {exc}") from None
    json_check(value, nul_possible=nul_check and b"\\u0000" in raw)
    return value


class ORJSONParser(BaseParser):
    """Parses ``application/json`` bodies with ``json_parse``."""

    media_type = "application/json"

    def parse(self, stream: Any, media_type: str | None = None, parser_context: dict | None = None) -> Any:
        raw = stream.read() if stream is not None else b""
        return json_parse(raw)
