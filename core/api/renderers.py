import json
from typing import Any

import orjson
from rest_framework.renderers import BaseRenderer


class ORJSONRenderer(BaseRenderer):
    """JSON via orjson: several times faster than the stdlib encoder on large responses."""

    media_type = "application/json"
    format = "json"
    charset = None

    def render(self, data: Any, accepted_media_type: str | None = None, renderer_context: dict | None = None) -> bytes:
        if data is None:
            return b""
        try:
            return orjson.dumps(data, option=orjson.OPT_NON_STR_KEYS)
        except orjson.JSONEncodeError:
            # orjson writes integers of 64 bits at most; a row stored before meta_data's number rule
            # (jsonb gives 1e19 back as an integer) is still rendered, by the slower standard encoder.
            return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()
