"""The fake Graph API: `POST /{version}/{phone_number_id}/messages` (and `/marketing_messages`, Meta's Marketing
Messages API: same body, same answers, the path recorded with each send), `GET /{version}/{waba_id}/message_templates`.

A send names its user by `to` (a number) or, from 2026, by `recipient` (a business-scoped user ID; sandbox/users.py).
It is validated as Meta does (code 100; a BSUID for an AUTHENTICATION template: 131062; a registry template's media
header or dynamic button without its parameter: 132012 / 131008, sandbox/template_checks.py), refused by the rate
limits (130429 per phone number, 131056 per recipient), then given its outcome (a MARKETING template to a region Meta
does not deliver marketing to: accepted, then a failed status 131049; else a script's, else the config's default;
see `sandbox.outcomes`) after the configured latency. An accepted send gets a wamid, `contacts[0].user_id` and, with
a webhook URL, its status webhooks.
"""

from __future__ import annotations

import asyncio
import base64
import time
from typing import Any

import orjson
from aiohttp import web

from sandbox.journal import journal_from_env
from sandbox.limits import MessagingLimits
from sandbox.meta_errors import STATUS_CODES
from sandbox.outcomes import REFUSALS, is_accepted, parse_outcome
from sandbox.responses import error_response, json_response
from sandbox.state import SandboxState, wa_id_of
from sandbox.template_checks import TemplateChecks
from sandbox.users import bsuid_of, recipient_key, recipient_of, region_of
from sandbox.webhooks import StatusWebhooks


def validate_message(body: Any) -> str | None:
    """What is wrong with a send's body (Meta answers these with code 100), or None."""
    if not isinstance(body, dict):
        return "The request body must be a JSON object"
    if body.get("messaging_product") != "whatsapp":
        return "The parameter messaging_product is required and must be 'whatsapp'"
    recipient = recipient_of(body)
    if isinstance(recipient, str):
        return recipient
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


class GraphRoutes:
    """The Graph API handlers, over the sandbox's state; accepted sends schedule their status webhooks."""

    def __init__(self, state: SandboxState, webhooks: StatusWebhooks, limits: MessagingLimits | None = None):
        self.state = state
        self.webhooks = webhooks
        # Meta's messaging limit, counted (never enforced) per portfolio: sandbox/limits.py.
        self.limits = limits
        # Media headers and dynamic buttons checked against the registry's templates, as Meta does.
        self.template_checks = TemplateChecks()
        # Every arrival also on disk when SANDBOX_JOURNAL is set (sandbox/journal.py).
        self.journal = journal_from_env(state.run_id)

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
                by, to_digits = recipient_of(body)  # the number's digits, or the BSUID of a `recipient` send
                category = "MARKETING" if path == "marketing_messages" else ""
                category = category or self.template_checks.category(state.templates, body["template"])
                if by == "recipient" and category == "AUTHENTICATION":
                    # Meta sends authentication templates (one-tap, zero-tap, copy code) to numbers only.
                    outcome, problem = "error:131062", "Authentication templates need the user's phone number (to)"
                elif state.over_cap(phone_number_id, received_at):
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
                elif category == "MARKETING" and region_of(to_digits) in config.marketing_blocked_regions:
                    # Meta accepts the send, then reports it failed with 131049: it does not deliver marketing
                    # templates to US users (docs/sandbox.md).
                    outcome = "failed_webhook:131049"
                    problem = f"Marketing template messages are not delivered to users in {region_of(to_digits)}"
                else:
                    outcome = state.next_outcome(to_digits)
                if is_accepted(outcome):
                    state.count_accepted(phone_number_id, to_digits, received_at)
                    if self.limits is not None:
                        self.limits.accepted(phone_number_id, to_digits, received_at)
        if not to_digits and isinstance(body, dict):
            to_digits = recipient_key(body.get("recipient") or body.get("to") or "")
        state.requests.append((seq, received_at, phone_number_id, authorization, raw, outcome, to_digits, path))
        if self.journal is not None:
            self.journal.record(
                received_at=received_at,
                phone_number_id=phone_number_id,
                to=to_digits,
                outcome=outcome,
                path=path,
                body=body,
            )

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
        if "recipient" in body:
            user_id, wa_id = to_digits, None
            contact = {"input": body["recipient"], "user_id": user_id}
        else:
            user_id, wa_id = bsuid_of(to_digits), wa_id_of(to_digits)
            state.numbers_by_bsuid[user_id] = to_digits
            contact = {"input": body["to"], "wa_id": wa_id, "user_id": user_id}
        # A reset while this send waited its latency means a new test: its statuses would leak into that one.
        if config.webhook_url and generation == state.generation:
            callback = body.get("biz_opaque_callback_data")
            self.webhooks.schedule(
                phone_number_id,
                wamid,
                self.status_recipient_id(user_id, wa_id),
                kind,
                number,
                received_at,
                callback=callback if isinstance(callback, str) else None,
                user_id=user_id,
                by_number=wa_id is not None,
                details=problem,
            )
        return json_response(
            {
                "messaging_product": "whatsapp",
                "contacts": [contact],
                "messages": [{"id": wamid, "message_status": "accepted"}],
            }
        )

    def status_recipient_id(self, user_id: str, wa_id: str | None) -> str | None:
        """The `recipient_id` (wa_id) of a send's statuses, or None for a user Meta names by BSUID only: one with
        a username (`username_users`), or a BSUID send whose number the sandbox never saw in this run."""
        state = self.state
        username_users = {recipient_key(user) for user in state.config.username_users}
        number = state.numbers_by_bsuid.get(user_id)
        if number is None or user_id in username_users or number in username_users:
            return None
        return wa_id if wa_id is not None else wa_id_of(number)

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
