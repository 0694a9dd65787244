"""One webhook posted at once, signed as Meta signs them: what the control API's webhook calls share.

The body is Meta's envelope (`object: whatsapp_business_account`, one `entry` of one change); the header
`X-Hub-Signature-256: sha256=<HMAC-SHA256(app secret, raw body)>` when an app secret is set.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from typing import Any

import orjson
from aiohttp import ClientSession, ClientTimeout

from sandbox.responses import JSON
from sandbox.state import SandboxConfig


def envelope(*, waba_id: str, field: str, value: dict[str, Any], at: int | None = None) -> dict[str, Any]:
    """Meta's webhook envelope for one change of one WhatsApp Business Account (`entry[].time` = `at` or now)."""
    entry = {"id": waba_id or "0", "time": at if at is not None else int(time.time())}
    return {"object": "whatsapp_business_account", "entry": [{**entry, "changes": [{"value": value, "field": field}]}]}


def signed_headers(secret: str | None, body: bytes) -> dict[str, str]:
    headers = {"Content-Type": JSON, "User-Agent": "facebookexternalua"}
    if secret:
        headers["X-Hub-Signature-256"] = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return headers


async def post_envelope(config: SandboxConfig, data: dict[str, Any], *, timeout: float = 10.0) -> int:
    """Post `data` to the configured webhook URL now; the receiver's HTTP status (the caller checked the URL)."""
    body = orjson.dumps(data)
    async with ClientSession(timeout=ClientTimeout(total=timeout)) as session:
        async with session.post(
            str(config.webhook_url), data=body, headers=signed_headers(config.app_secret, body)
        ) as r:
            await r.read()
            return r.status
