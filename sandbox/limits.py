"""Meta's messaging limit, as the sandbox counts it, and the account webhooks it posts on demand.

Tiers: each WABA (or a portfolio grouping several WABAs) may get a limit N over a moving window. A `to` counts
when an accepted send reaches it and it was not counted in the window (Meta's conversation start) and its
customer-service window is not open (the sandbox opened one when it posted an incoming message from that number
to that phone number). The sandbox never refuses a send for it: it records the most numbers any window held, and
`GET /_sandbox/messaging-limits` reports every portfolio that went over (the service must never cause one).

Control API (beside sandbox/control.py's):
POST /_sandbox/messaging-limits  {"limit": 200 | null, "window_seconds"?, "waba_id"? | "portfolio"?, "waba_ids"?,
                                  "customer_window_seconds"?}: a tier (no waba_id/portfolio: the default of all)
GET  /_sandbox/messaging-limits  {"portfolios": {id: {limit, window_seconds, used, max_used, over}}, "over": [...]}
POST /_sandbox/webhooks/inbound-message         {"phone_number_id", "from": "+57..."}: a customer writes
POST /_sandbox/webhooks/business-capability     {"waba_id", "max_daily_conversations_per_business": 2000 | -1}
POST /_sandbox/webhooks/phone-number-quality    {"waba_id"?, "phone_number_id"?, "display_phone_number"?, "event",
                                                 "current_limit"?, "max_daily_conversations_per_business"?}
Each posts one signed envelope to the webhook URL at once and answers {"status": <the receiver's HTTP status>}.

Env (read by `python -m sandbox`): SANDBOX_MESSAGING_LIMIT (default tier, e.g. 2000), SANDBOX_MESSAGING_WINDOW_SECONDS.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import ClientSession, ClientTimeout, web

from sandbox.responses import JSON, json_object, json_response
from sandbox.state import SandboxState, digits

DEFAULT = "*"


@dataclass
class Tier:
    limit: int | None
    window_seconds: float
    counted: dict[str, float] = field(default_factory=dict)  # to digits -> when counted
    order: deque = field(default_factory=deque)  # (counted at, to digits), oldest first
    max_used: int = 0

    def count(self, to_digits: str, now: float) -> None:
        cutoff = now - self.window_seconds
        while self.order and self.order[0][0] <= cutoff:
            at, number = self.order.popleft()
            if self.counted.get(number) == at:
                del self.counted[number]
        if to_digits in self.counted:
            return
        self.counted[to_digits] = now
        self.order.append((now, to_digits))
        self.max_used = max(self.max_used, len(self.counted))

    def report(self, now: float) -> dict[str, Any]:
        cutoff = now - self.window_seconds
        used = sum(1 for at in self.counted.values() if at > cutoff)
        over = self.limit is not None and self.max_used > self.limit
        return {
            "limit": self.limit,
            "window_seconds": self.window_seconds,
            "used": used,
            "max_used": self.max_used,
            "over": over,
        }


class MessagingLimits:
    """The tiers of one sandbox run (reset with the state: `reset()`)."""

    def __init__(self, state: SandboxState, *, default_limit: int | None, window_seconds: float):
        self.state = state
        self.initial = (default_limit, window_seconds)
        self.reset()

    def reset(self) -> None:
        limit, window = self.initial
        self.tiers: dict[str, Tier] = {DEFAULT: Tier(limit=limit, window_seconds=window)}
        self.portfolio_of: dict[str, str] = {}  # waba_id -> portfolio id
        self.customer_window_seconds = 86400.0
        self.inbound: dict[tuple[str, str], float] = {}  # (phone_number_id, from digits) -> last wrote
        self.generation = self.state.generation

    def _fresh(self) -> None:
        if self.generation != self.state.generation:  # the state was reset (a new test)
            self.reset()

    def portfolio(self, phone_number_id: str) -> str:
        waba_id = self.state.config.phone_numbers.get(phone_number_id, {}).get("waba_id", "")
        if waba_id in self.portfolio_of:
            return self.portfolio_of[waba_id]
        return waba_id if waba_id in self.tiers else DEFAULT

    def accepted(self, phone_number_id: str, to_digits: str, now: float) -> None:
        """An accepted send: count its `to` in its portfolio's window unless the customer's window is open."""
        self._fresh()
        tier = self.tiers[self.portfolio(phone_number_id)]
        wrote = self.inbound.get((phone_number_id, to_digits))
        if wrote is not None and now - wrote < self.customer_window_seconds:
            return
        tier.count(to_digits, now)

    # ---- control API -----------------------------------------------------------------------------------------

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/_sandbox/messaging-limits", self.get),
            web.post("/_sandbox/messaging-limits", self.set),
            web.post("/_sandbox/webhooks/inbound-message", self.inbound_message),
            web.post("/_sandbox/webhooks/business-capability", self.business_capability),
            web.post("/_sandbox/webhooks/phone-number-quality", self.phone_number_quality),
        ]

    async def get(self, request: web.Request) -> web.Response:
        self._fresh()
        now = time.time()
        portfolios = {name: tier.report(now) for name, tier in self.tiers.items()}
        over = sorted(name for name, report in portfolios.items() if report["over"])
        return json_response({"portfolios": portfolios, "over": over, "portfolio_of": self.portfolio_of})

    async def set(self, request: web.Request) -> web.Response:
        self._fresh()
        data = await json_object(request)
        limit = data.get("limit")
        if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 1):
            return json_response({"error": "limit must be a positive integer or null"}, 400)
        window = data.get("window_seconds", self.tiers[DEFAULT].window_seconds)
        if not isinstance(window, (int, float)) or window <= 0:
            return json_response({"error": "window_seconds must be a number > 0"}, 400)
        if "customer_window_seconds" in data:
            value = data["customer_window_seconds"]
            if not isinstance(value, (int, float)) or value <= 0:
                return json_response({"error": "customer_window_seconds must be a number > 0"}, 400)
            self.customer_window_seconds = float(value)
        name = str(data.get("portfolio") or data.get("waba_id") or DEFAULT)
        self.tiers[name] = Tier(limit=limit, window_seconds=float(window))
        for waba_id in data.get("waba_ids") or []:
            self.portfolio_of[str(waba_id)] = name
        return json_response({"portfolio": name, **self.tiers[name].report(time.time())})

    async def _post(self, waba_id: str, field_name: str, value: dict[str, Any]) -> web.Response:
        url, secret = self.state.config.webhook_url, self.state.config.app_secret
        if not url:
            return json_response({"error": "no webhook_url configured"}, 409)
        envelope = {
            "object": "whatsapp_business_account",
            "entry": [
                {"id": waba_id or "0", "time": int(time.time()), "changes": [{"value": value, "field": field_name}]}
            ],
        }
        body = orjson.dumps(envelope)
        headers = {"Content-Type": JSON, "User-Agent": "facebookexternalua"}
        if secret:
            headers["X-Hub-Signature-256"] = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        async with ClientSession(timeout=ClientTimeout(total=10)) as session:
            async with session.post(url, data=body, headers=headers) as response:
                await response.read()
                return json_response({"status": response.status, "envelope": envelope})

    async def inbound_message(self, request: web.Request) -> web.Response:
        self._fresh()
        data = await json_object(request)
        phone_number_id, sender = str(data.get("phone_number_id") or ""), digits(data.get("from") or "")
        if not phone_number_id or not sender:
            return json_response({"error": 'expected {"phone_number_id", "from"}'}, 400)
        now = time.time()
        self.inbound[(phone_number_id, sender)] = now
        phone = self.state.config.phone_numbers.get(phone_number_id, {})
        value = {
            "messaging_product": "whatsapp",
            "metadata": {
                "display_phone_number": phone.get("display_phone_number", "15550000000"),
                "phone_number_id": phone_number_id,
            },
            "contacts": [{"profile": {"name": "Sandbox customer"}, "wa_id": sender}],
            "messages": [
                {
                    "from": sender,
                    "id": f"wamid.IN{int(now * 1000)}{sender}",
                    "timestamp": str(int(now)),
                    "type": "text",
                    "text": {"body": str(data.get("text") or "hola")},
                }
            ],
        }
        return await self._post(phone.get("waba_id", "0"), "messages", value)

    async def business_capability(self, request: web.Request) -> web.Response:
        data = await json_object(request)
        waba_id = str(data.get("waba_id") or "")
        if not waba_id:
            return json_response({"error": 'expected {"waba_id", "max_daily_conversations_per_business"}'}, 400)
        value = {key: data[key] for key in data if key != "waba_id"}
        return await self._post(waba_id, "business_capability_update", value)

    async def phone_number_quality(self, request: web.Request) -> web.Response:
        data = await json_object(request)
        phone = self.state.config.phone_numbers.get(str(data.get("phone_number_id") or ""), {})
        waba_id = str(data.get("waba_id") or phone.get("waba_id") or "")
        if not waba_id or not data.get("event"):
            return json_response({"error": 'expected {"waba_id" or "phone_number_id", "event", ...}'}, 400)
        value = {key: data[key] for key in data if key not in ("waba_id", "phone_number_id")}
        value.setdefault("display_phone_number", phone.get("display_phone_number", "15550000000"))
        return await self._post(waba_id, "phone_number_quality_update", value)


def limits_from_env(state: SandboxState) -> MessagingLimits:
    """The default tier from SANDBOX_MESSAGING_LIMIT (none: unlimited) and SANDBOX_MESSAGING_WINDOW_SECONDS."""
    raw = os.environ.get("SANDBOX_MESSAGING_LIMIT", "").strip().lower()
    limit = int(raw) if raw and raw not in ("unlimited", "none", "0") else None
    window = float(os.environ.get("SANDBOX_MESSAGING_WINDOW_SECONDS", "86400"))
    return MessagingLimits(state, default_limit=limit, window_seconds=window)
