"""The fake Graph API: `POST /{version}/{phone_number_id}/messages` (and `/marketing_messages`, Meta's Marketing
Messages API: same body, same answers, the path recorded with each send), `GET /{version}/{waba_id}/message_templates`.

A send is validated as Meta does (code 100; a registry template's media header or dynamic button without its
parameter: 132012 / 131008, sandbox/template_checks.py), refused by the rate limits (130429 per phone number, 131056 per
recipient), then given its outcome (a script's, else the config's default; see `sandbox.outcomes`) after the
configured latency. An accepted send gets a wamid and, with a webhook URL, its status webhooks.
"""

from __future__ import annotations

import asyncio
import base64
import time
from typing import Any

import orjson
from aiohttp import web

from sandbox.limits import MessagingLimits
from sandbox.meta_errors import STATUS_CODES
from sandbox.outcomes import REFUSALS, is_accepted, parse_outcome
from sandbox.responses import error_response, json_response
from sandbox.state import SandboxState, digits, wa_id_of
from sandbox.template_checks import TemplateChecks
from sandbox.webhooks import StatusWebhooks


def validate_message(body: Any) -> str | None:
    """What is wrong with a send's body (Meta answers these with code 100), or None."""
    if not isinstance(body, dict):
        return "The request body must be a JSON object"
    if body.get("messaging_product") != "whatsapp":
        return "The parameter messaging_product is required and must be 'whatsapp'"
    to = body.get("to")
    # A BSUID goes as "recipient" in place of "to".
    bsuid = to is None and isinstance(body.get("recipient"), str) and bool(body["recipient"])
    if not bsuid and (not isinstance(to, str) or not digits(to)):
        return "The parameter to is required"
    if body.get("type") != "template":
        return "The sandbox only accepts messages of type 'template'"
    template = body.get("template")
    if not isinstance(template, dict):
        return "The parameter template is required"
    if not isinstance(template.get("name"), str) or not template["name"]:
        return "The parameter template['name'] is required"
    language = template.get("language")
    if not isinstance(language, dict) or not isinstance(language.get("code"), str) or not language["code"]:
        return "The parameter template['language']['code'] is required"
    components = template.get("components", [])
    if not isinstance(components, list) or not all(isinstance(c, dict) for c in components):
        return "The parameter template['components'] must be an array of objects"
    return None


def recipient_key(body: dict[str, Any]) -> str:
    """Whom a send goes to, as the sandbox keys its scripts, limits and log: the digits of ``to``, or a BSUID
    (``recipient``) as given."""
    if "to" not in body and isinstance(body.get("recipient"), str):
        return body["recipient"]
    return digits(body.get("to", ""))


class GraphRoutes:
    """The Graph API handlers, over the sandbox's state; accepted sends schedule their status webhooks."""

    def __init__(self, state: SandboxState, webhooks: StatusWebhooks, limits: MessagingLimits | None = None):
        self.state = state
        self.webhooks = webhooks
        # Meta's messaging limit, counted (never enforced) per portfolio: sandbox/limits.py.
        self.limits = limits
        # Media headers and dynamic buttons checked against the registry's templates, as Meta does.
        self.template_checks = TemplateChecks()

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/{version}/{phone_number_id}/messages", self.send_message),
            web.post("/{version}/{phone_number_id}/marketing_messages", self.send_marketing_message),
            web.get("/{version}/{waba_id}/message_templates", self.message_templates),
        ]

    async def send_marketing_message(self, request: web.Request) -> web.StreamResponse:
        return await self.send_message(request, path="marketing_messages")

    async def send_message(self, request: web.Request, path: str = "messages") -> web.StreamResponse:
        received_at = time.time()
        state = self.state
        phone_number_id = request.match_info["phone_number_id"]
        authorization = request.headers.get("Authorization", "")
        raw = await request.read()
        seq = next(state.seq)
        config = state.config
        generation = state.generation

        body: Any = None
        problem: str | None = None
        to_digits = ""
        token = authorization[7:].strip() if authorization[:7].lower() == "bearer " else ""
        if not token:
            outcome = "unauthorized"
        else:
            try:
                body = orjson.loads(raw)
            except orjson.JSONDecodeError:
                problem = "The request body is not valid JSON"
            else:
                problem = validate_message(body)
            if problem:
                outcome = "invalid"
            else:
                to_digits = recipient_key(body)
                if state.over_cap(phone_number_id, received_at):
                    outcome = "capped"
                elif state.pair_limited(phone_number_id, to_digits, received_at):
                    outcome = "pair_limited"
                elif body["template"]["name"] in state.template_errors:
                    # The template is paused / disabled at Meta: every send of it is refused, nothing counted.
                    outcome = f"error:{state.template_errors[body['template']['name']]}"
                elif (missing := self.template_checks.problem(state.templates, body["template"])) is not None:
                    # A media header or a dynamic button without its parameter: Meta's 132012 / 131008.
                    code, problem = missing
                    outcome = f"error:{code}"
                else:
                    outcome = state.next_outcome(to_digits)
                    if is_accepted(outcome):
                        state.count_accepted(phone_number_id, to_digits, received_at)
                        if self.limits is not None:
                            self.limits.accepted(phone_number_id, to_digits, received_at)
        if not to_digits and isinstance(body, dict):
            to_digits = recipient_key(body)
        state.requests.append((seq, received_at, phone_number_id, authorization, raw, outcome, to_digits, path))

        kind, number = (outcome, 0) if outcome in REFUSALS else parse_outcome(outcome)
        if kind == "drop":
            # Read the request, then close the socket without a byte of answer (the outcome is unknown to the client).
            request.protocol.force_close()
            if request.transport is not None:
                request.transport.close()
            return web.Response(status=204)
        if kind == "hang":
            await asyncio.sleep(config.hang_seconds)
            return error_response(2, status=504, details="The sandbox hung on purpose")
        delay = config.latency_ms / 1000.0 + (number / 1000.0 if kind == "slow" else 0.0)
        if delay:
            await asyncio.sleep(delay)

        if kind == "unauthorized":
            return error_response(190, details="Missing or malformed Authorization: Bearer <access token>")
        if kind == "invalid":
            return error_response(100, status=400, details=problem)
        if kind == "capped":
            return error_response(130429, status=400, details=f"More than {config.phone_mps_cap} messages/s")
        if kind == "pair_limited":
            details = f"Same recipient within {config.pair_rate_limit_ms:g} ms on this phone number"
            return error_response(131056, status=400, details=details)
        if kind == "error":
            return error_response(number, details=problem)
        if kind == "http":
            return error_response(STATUS_CODES.get(number, 100), status=number)
        if kind == "raw":
            return web.Response(text=f"<html><body>{number} sandbox proxy error</body></html>", status=number)

        wamid = f"wamid.SBX{state.run_id}{next(state.wamids):012d}"
        # A reset while this send waited its latency means a new test: its statuses would leak into that one.
        wa_id = wa_id_of(to_digits) if "to" in body else to_digits
        if config.webhook_url and generation == state.generation:
            callback = body.get("biz_opaque_callback_data")
            self.webhooks.schedule(
                phone_number_id,
                wamid,
                wa_id,
                kind,
                number,
                received_at,
                callback=callback if isinstance(callback, str) else None,
            )
        return json_response(
            {
                "messaging_product": "whatsapp",
                "contacts": [
                    {"input": body["to"], "wa_id": wa_id}
                    if "to" in body
                    else {"input": body["recipient"], "user_id": body["recipient"]}
                ],
                "messages": [{"id": wamid, "message_status": "accepted"}],
            }
        )

    async def message_templates(self, request: web.Request) -> web.Response:
        authorization = request.headers.get("Authorization", "")
        if authorization[:7].lower() != "bearer " or not authorization[7:].strip():
            return error_response(190, details="Missing or malformed Authorization: Bearer <access token>")
        waba_id = request.match_info["waba_id"]
        query = request.query
        try:
            limit = int(query.get("limit", "25"))
            start = int(base64.urlsafe_b64decode(query["after"]).decode()) if "after" in query else 0
        except (ValueError, UnicodeDecodeError):
            return error_response(100, status=400, details="Invalid limit or after cursor")
        if not 1 <= limit <= 1000 or start < 0:
            return error_response(100, status=400, details="limit must be 1..1000")
        templates = self.state.templates.get(waba_id, self.state.templates[None])
        for key in ("name", "language", "status", "category"):
            if key in query:
                templates = [t for t in templates if str(t.get(key, "")).lower() == query[key].lower()]
        page = templates[start : start + limit]
        data: dict[str, Any] = {"data": page}
        if page:
            cursors = {
                "before": base64.urlsafe_b64encode(str(start).encode()).decode(),
                "after": base64.urlsafe_b64encode(str(start + len(page)).encode()).decode(),
            }
            data["paging"] = {"cursors": cursors}
            if start + len(page) < len(templates):
                next_url = request.url.with_query({**query, "limit": str(limit), "after": cursors["after"]})
                data["paging"]["next"] = str(next_url)
        else:
            data["paging"] = {"cursors": {}}
        return json_response(data)
