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
POST /_sandbox/webhooks/inbound-message         {"phone_number_id", "from": "+57..." and/or "user_id": "<BSUID>",
                                                 "text"?}: a customer writes (named by BSUID only: a user with a
                                                 username; no `wa_id`, no `from`)
POST /_sandbox/webhooks/business-capability     {"waba_id", "max_daily_conversations_per_business": 2000 | -1
                                                 | "TIER_2K" | "TIER_UNLIMITED" | ...,
                                                 "max_daily_conversation_per_phone"?}
POST /_sandbox/webhooks/phone-number-quality    {"waba_id"?, "phone_number_id"?, "display_phone_number"?, "event",
                                                 "old_limit"?, "current_limit"?,
                                                 "max_daily_conversations_per_business"?}
Each posts one signed envelope to the webhook URL at once and answers {"status": <the receiver's HTTP status>,
"envelope"}. A messaging limit a webhook announces becomes the sandbox's own limit for that WABA's portfolio (Meta's
word is the limit), so `over` keeps meaning "the service sent past what Meta allowed".

Env (read by `python -m sandbox`): SANDBOX_MESSAGING_LIMIT (default tier, e.g. 2000), SANDBOX_MESSAGING_WINDOW_SECONDS.
"""

from __future__ import annotations

import os
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from sandbox.responses import json_object, json_response
from sandbox.signed_posts import envelope, post_envelope
from sandbox.state import SandboxState, digits
from sandbox.users import is_bsuid

DEFAULT = "*"
# Meta's messaging-limit tier names (webhooks from 2026 give these where they gave numbers); None is unlimited.
TIER_NAMES: dict[str, int | None] = {
    "TIER_50": 50,
    "TIER_250": 250,
    "TIER_1K": 1000,
    "TIER_2K": 2000,
    "TIER_10K": 10000,
    "TIER_100K": 100000,
    "TIER_UNLIMITED": None,
}
LIMIT_FIELDS = ("max_daily_conversations_per_business", "max_daily_conversation_per_phone")


def tier_limit(value: Any) -> int | None:
    """The limit a webhook's messaging-limit value means (None: unlimited); ValueError for anything else.
    Accepts Meta's forms: a number (2000, -1), the same as a string ("2000"), or a tier name ("TIER_2K")."""
    if isinstance(value, str):
        if value.upper() in TIER_NAMES:
            return TIER_NAMES[value.upper()]
        if value.lstrip("-").isdecimal():
            value = int(value)
    if isinstance(value, int) and not isinstance(value, bool) and (value == -1 or value > 0):
        return None if value == -1 else value
    raise ValueError(f"a messaging limit is a positive number, -1, or one of {', '.join(TIER_NAMES)}")


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
        """An accepted send: count its `to` (digits, or a BSUID) in its portfolio's window unless the customer's
        window is open."""
        self._fresh()
        tier = self.tiers[self.portfolio(phone_number_id)]
        wrote = self.inbound.get((phone_number_id, to_digits))
        if wrote is not None and now - wrote < self.customer_window_seconds:
            return
        tier.count(to_digits, now)

    def announce(self, waba_id: str, limit: int | None) -> None:
        """Meta announced this WABA's messaging limit: its portfolio's tier takes it (a WABA without a tier of its
        own gets one, with the default's window, counting from now)."""
        self._fresh()
        name = self.portfolio_of.get(waba_id, waba_id)
        if name in self.tiers:
            self.tiers[name].limit = limit
        else:
            self.tiers[name] = Tier(limit=limit, window_seconds=self.tiers[DEFAULT].window_seconds)

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
        config = self.state.config
        if not config.webhook_url:
            return json_response({"error": "no webhook_url configured"}, 409)
        data = envelope(waba_id=waba_id, field=field_name, value=value)
        return json_response({"status": await post_envelope(config, data), "envelope": data})

    async def inbound_message(self, request: web.Request) -> web.Response:
        self._fresh()
        data = await json_object(request)
        phone_number_id, sender = str(data.get("phone_number_id") or ""), digits(data.get("from") or "")
        user_id = data.get("user_id")
        if not phone_number_id or not (sender or user_id) or (user_id is not None and not is_bsuid(user_id)):
            return json_response({"error": 'expected {"phone_number_id", "from" and/or "user_id": "<BSUID>"}'}, 400)
        now = time.time()
        # The customer-service window opens for the user however a later send names it (number or BSUID).
        known_number = self.state.numbers_by_bsuid.get(user_id) if user_id else None
        for key in filter(None, (sender, user_id, known_number)):
            self.inbound[(phone_number_id, key)] = now
        phone = self.state.config.phone_numbers.get(phone_number_id, {})
        contact: dict[str, Any] = {"profile": {"name": "Sandbox customer"}}
        message: dict[str, Any] = {}
        if sender:
            contact["wa_id"], message["from"] = sender, sender
        else:  # named by BSUID only: a user with a username, whose number Meta does not share
            contact["profile"]["username"] = "sandbox.customer"
        if user_id:
            contact["user_id"], message["from_user_id"] = user_id, user_id
        message.update(
            {
                "id": f"wamid.IN{int(now * 1000)}{sender or digits(user_id)}",
                "timestamp": str(int(now)),
                "type": "text",
                "text": {"body": str(data.get("text") or "hola")},
            }
        )
        value = {
            "messaging_product": "whatsapp",
            "metadata": {
                "display_phone_number": phone.get("display_phone_number", "15550000000"),
                "phone_number_id": phone_number_id,
            },
            "contacts": [contact],
            "messages": [message],
        }
        return await self._post(phone.get("waba_id", "0"), "messages", value)

    @staticmethod
    def _announced(data: dict[str, Any], fields: tuple[str, ...]) -> list[int | None]:
        """The limits `fields` announce, in order (each validated: ValueError for a value Meta never sends)."""
        return [tier_limit(data[name]) for name in fields if name in data]

    async def business_capability(self, request: web.Request) -> web.Response:
        data = await json_object(request)
        waba_id = str(data.get("waba_id") or "")
        try:
            announced = self._announced(data, LIMIT_FIELDS)
        except ValueError as exc:
            return json_response({"error": str(exc)}, 400)
        if not waba_id or not announced:
            return json_response({"error": 'expected {"waba_id", "max_daily_conversations_per_business"}'}, 400)
        value = {key: data[key] for key in data if key != "waba_id"}
        answer = await self._post(waba_id, "business_capability_update", value)
        if answer.status == 200:
            self.announce(waba_id, announced[0])
        return answer

    async def phone_number_quality(self, request: web.Request) -> web.Response:
        data = await json_object(request)
        phone = self.state.config.phone_numbers.get(str(data.get("phone_number_id") or ""), {})
        waba_id = str(data.get("waba_id") or phone.get("waba_id") or "")
        if not waba_id or not data.get("event"):
            return json_response({"error": 'expected {"waba_id" or "phone_number_id", "event", ...}'}, 400)
        try:
            announced = self._announced(data, LIMIT_FIELDS[:1])
        except ValueError as exc:
            return json_response({"error": str(exc)}, 400)
        value = {key: data[key] for key in data if key not in ("waba_id", "phone_number_id")}
        value.setdefault("display_phone_number", phone.get("display_phone_number", "15550000000"))
        answer = await self._post(waba_id, "phone_number_quality_update", value)
        if answer.status == 200 and announced:
            self.announce(waba_id, announced[0])
        return answer


def limits_from_env(state: SandboxState) -> MessagingLimits:
    """The default tier from SANDBOX_MESSAGING_LIMIT (none: unlimited) and SANDBOX_MESSAGING_WINDOW_SECONDS."""
    raw = os.environ.get("SANDBOX_MESSAGING_LIMIT", "").strip().lower()
    limit = int(raw) if raw and raw not in ("unlimited", "none", "0") else None
    window = float(os.environ.get("SANDBOX_MESSAGING_WINDOW_SECONDS", "86400"))
    return MessagingLimits(state, default_limit=limit, window_seconds=window)
