"""aiohttp answers shared by the Graph routes and the control API."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from sandbox.meta_errors import ERROR_STATUS, meta_error

JSON = "application/json"


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type=JSON)


def error_response(code: int, *, status: int | None = None, details: str | None = None) -> web.Response:
    """Meta's error envelope for `code`, with the HTTP status Meta answers it with unless `status` is given."""
    return json_response(meta_error(code, details=details), status or ERROR_STATUS.get(code, 400))


async def json_object(request: web.Request) -> dict[str, Any]:
    """The request's body as a JSON object, or a 400."""
    try:
        data = orjson.loads(await request.read())
    except orjson.JSONDecodeError:
        raise web.HTTPBadRequest(text='{"error": "invalid JSON"}', content_type=JSON) from None
    if not isinstance(data, dict):
        raise web.HTTPBadRequest(text='{"error": "a JSON object is required"}', content_type=JSON)
    return data
