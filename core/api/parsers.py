from typing import Any

import orjson
from rest_framework.exceptions import ParseError
from rest_framework.parsers import BaseParser


class InvalidJSON(ParseError):
    default_code = "invalid_json"
    default_detail = "The request body is not valid JSON."


class ORJSONParser(BaseParser):
    """Parses ``application/json`` bodies with orjson (strict: no NaN, UTF-8 only)."""

    media_type = "application/json"

    def parse(self, stream: Any, media_type: str | None = None, parser_context: dict | None = None) -> Any:
        try:
            raw = stream.read() if stream is not None else b""
            return orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise InvalidJSON(f"The request body is not valid JSON: {exc}") from exc
