"""Meta's webhooks about a user, posted on demand, and the user's ids (control API beside sandbox/control.py's).

POST /_sandbox/user_preferences  {"to"?, "user_id"?, "value": "stop"|"resume", "phone_number_id"?, "timestamp"?}:
                                 Meta's signed `user_preferences` change now; with `to` only it names the user by
                                 `wa_id` (as before 2026), with `user_id` only by BSUID (a user with a username),
                                 with both by both; answers {"status": <the receiver's HTTP status>, "envelope"}
GET  /_sandbox/user_id?to=+57... {"to", "wa_id", "user_id", "region"}: the BSUID the sandbox answers for that number

(An incoming message from a user named by BSUID only: `POST /_sandbox/webhooks/inbound-message` in sandbox/limits.py.)
"""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web

from sandbox.responses import json_object, json_response
from sandbox.signed_posts import envelope, post_envelope
from sandbox.state import SandboxState, digits, wa_id_of
from sandbox.users import bsuid_of, is_bsuid, region_of_number

DEFAULT_PHONE_NUMBER_ID = "100000000000001"


def user_fields(wa_id: str | None, user_id: str | None) -> dict[str, str]:
    """How Meta names a user in a change: `wa_id`, `user_id` (the BSUID), or both."""
    fields = {"wa_id": wa_id} if wa_id else {}
    if user_id:
        fields["user_id"] = user_id
    return fields


def change_metadata(state: SandboxState, phone_number_id: str) -> tuple[str, dict[str, str]]:
    """(the WABA id, `metadata`) of a change about a business phone number (`phone_numbers` in the config)."""
    phone = state.config.phone_numbers.get(phone_number_id, {})
    metadata = {
        "display_phone_number": phone.get("display_phone_number", "15550000000"),
        "phone_number_id": phone_number_id,
    }
    return phone.get("waba_id", "0"), metadata


def user_preferences_value(
    metadata: dict[str, str], *, wa_id: str | None, user_id: str | None, value: str, timestamp: int
) -> dict[str, Any]:
    """Meta's `user_preferences` change for one user (as Meta's webhook reference shows it, with 2026's user_id)."""
    who = user_fields(wa_id, user_id)
    detail = "User requested to stop marketing messages" if value == "stop" else "User requested to resume them"
    return {
        "messaging_product": "whatsapp",
        "metadata": metadata,
        "contacts": [{"profile": {"name": "Sandbox user"}, **who}],
        "user_preferences": [
            {**who, "detail": detail, "category": "marketing_messages", "value": value, "timestamp": timestamp}
        ],
    }


class UserRoutes:
    """`/_sandbox/user_preferences` and `/_sandbox/user_id` over the sandbox's state."""

    def __init__(self, state: SandboxState):
        self.state = state

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/_sandbox/user_preferences", self.user_preferences),
            web.get("/_sandbox/user_id", self.user_id),
        ]

    async def user_preferences(self, request: web.Request) -> web.Response:
        """A user stops or resumes marketing messages: Meta's `user_preferences` webhook, signed, posted now."""
        data = await json_object(request)
        to, user_id, value, moment = data.get("to"), data.get("user_id"), data.get("value"), data.get("timestamp")
        config = self.state.config
        named = (to is None or (isinstance(to, str) and digits(to))) and (user_id is None or is_bsuid(user_id))
        if not named or (to is None and user_id is None) or value not in ("stop", "resume"):
            return json_response(
                {"error": 'expected {"to": "+57..." and/or "user_id": "<BSUID>", "value": "stop"|"resume"}'}, 400
            )
        if moment is not None and (not isinstance(moment, int) or isinstance(moment, bool) or moment < 0):
            return json_response({"error": "timestamp must be a Unix time in seconds"}, 400)
        if not config.webhook_url:
            return json_response({"error": "no webhook_url configured"}, 409)
        phone_number_id = str(data.get("phone_number_id") or next(iter(config.phone_numbers), DEFAULT_PHONE_NUMBER_ID))
        waba_id, metadata = change_metadata(self.state, phone_number_id)
        wa_id = wa_id_of(digits(to)) if to is not None else None
        at = moment if moment is not None else int(time.time())
        value_ = user_preferences_value(metadata, wa_id=wa_id, user_id=user_id, value=value, timestamp=at)
        data = envelope(waba_id=waba_id, field="user_preferences", value=value_)
        return json_response({"status": await post_envelope(config, data), "envelope": data})

    async def user_id(self, request: web.Request) -> web.Response:
        to = digits(request.query.get("to", ""))
        if not to:
            return json_response({"error": "expected ?to=+57..."}, 400)
        answer = {"to": f"+{to}", "wa_id": wa_id_of(to), "user_id": bsuid_of(to), "region": region_of_number(to)}
        return json_response(answer)
