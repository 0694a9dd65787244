"""A small local WhatsApp Cloud (Graph) API: sends, message templates, signed status webhooks, scripted failures.

One asyncio process, no Django: it starts in a fraction of a second and serves thousands of sends per second.
Every piece of state lives in this process on purpose: it stands in for Meta, not for our service.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import gc
import hashlib
import heapq
import hmac
import itertools
import logging
import os
import secrets
import signal
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field, fields, replace
from typing import Any

import orjson
import uvloop
from aiohttp import ClientSession, ClientTimeout, TCPConnector, web

logger = logging.getLogger("whatsapp.sandbox")

JSON = "application/json"
# Meta batches statuses that fall due together; this is how long the sandbox lets them gather.
WEBHOOK_FLUSH_SECONDS = 0.2
# Statuses per webhook body: Meta sends several per POST under load, never thousands.
WEBHOOK_BATCH_MAX = 100
WEBHOOK_ATTEMPTS = 4
WEBHOOK_CONCURRENCY = 8

# HTTP status Meta answers with for an error code (most Graph errors are a plain 400).
_ERROR_STATUS: dict[int, int] = {
    0: 401,
    190: 401,
    10: 403,
    368: 403,
    131031: 403,
    4: 429,
    80007: 429,
    130429: 429,
    131056: 429,
    131048: 429,
    1: 500,
    2: 503,
    131000: 500,
    131016: 503,
    131057: 503,
}
_ERROR_MESSAGES: dict[int, str] = {
    0: "AuthException",
    1: "An unknown error occurred",
    2: "Service temporarily unavailable",
    4: "Application request limit reached",
    10: "Application does not have permission for this action",
    100: "Invalid parameter",
    190: "Error validating access token: Session has expired",
    368: "Temporarily blocked for policies violations",
    80007: "Rate limit issues",
    130429: "Rate limit hit",
    130472: "User's number is part of an experiment",
    131000: "Something went wrong",
    131008: "Required parameter is missing",
    131009: "Parameter value is not valid",
    131016: "Service unavailable",
    131026: "Message undeliverable",
    131031: "Account has been locked",
    131042: "Business eligibility payment issue",
    131047: "Re-engagement message",
    131048: "Spam rate limit hit",
    131049: "This message was not delivered to maintain healthy ecosystem engagement",
    131050: "Unable to deliver the message. This recipient has chosen to stop receiving marketing messages",
    131056: "(Business Account, Consumer Account) pair rate limit hit",
    131057: "Account in maintenance mode",
    132000: "Number of parameters does not match the expected number of params",
    132001: "Template name does not exist in the translation",
    132012: "Parameter format does not match format in the created template",
}
# `httpNNN` outcomes answer a Meta error body with the generic code Meta uses for that status.
_STATUS_CODES: dict[int, int] = {429: 4, 500: 1, 502: 1, 503: 2, 504: 2}

OUTCOME_HELP = (
    "ok | error:<code> | httpNNN (Meta error body) | rawNNN (non-JSON body) | hang | drop | slow:<ms> | "
    "failed_webhook:<code>"
)


def _template_catalogue() -> list[dict[str, Any]]:
    """Default templates, in the shape of `GET /{waba_id}/message_templates`."""
    return [
        {
            "name": "welcome_v2",
            "parameter_format": "NAMED",
            "components": [
                {
                    "type": "BODY",
                    "text": "Hola {{nombre}}, tu saldo es {{monto}}",
                    "example": {
                        "body_text_named_params": [
                            {"param_name": "nombre", "example": "Ana"},
                            {"param_name": "monto", "example": "$10.000"},
                        ]
                    },
                }
            ],
            "language": "es",
            "status": "APPROVED",
            "category": "MARKETING",
            "id": "900000000000001",
        },
        {
            "name": "order_update",
            "parameter_format": "POSITIONAL",
            "components": [
                {"type": "BODY", "text": "Hi {{1}}, order {{2}} shipped", "example": {"body_text": [["Ana", "A-1001"]]}}
            ],
            "language": "en_US",
            "status": "APPROVED",
            "category": "UTILITY",
            "id": "900000000000002",
        },
        {
            "name": "payment_reminder",
            "parameter_format": "NAMED",
            "components": [
                {
                    "type": "HEADER",
                    "format": "TEXT",
                    "text": "Pago a {{empresa}}",
                    "example": {"header_text_named_params": [{"param_name": "empresa", "example": "Acme"}]},
                },
                {
                    "type": "BODY",
                    "text": "Hola {{nombre}}, tu pago vence el {{fecha}}.",
                    "example": {
                        "body_text_named_params": [
                            {"param_name": "nombre", "example": "Ana"},
                            {"param_name": "fecha", "example": "30/11"},
                        ]
                    },
                },
                {"type": "FOOTER", "text": "Responde STOP para no recibir más mensajes"},
            ],
            "language": "es",
            "status": "APPROVED",
            "category": "UTILITY",
            "id": "900000000000003",
        },
    ]


@dataclass
class SandboxConfig:
    latency_ms: float = 50.0
    default_outcome: str = "ok"
    phone_mps_cap: int | None = None
    # Meta's pair rate limit (131056): the same recipient again on the same phone number sooner than this.
    pair_rate_limit_ms: float | None = None
    hang_seconds: float = 120.0
    max_recorded: int = 500_000
    webhook_url: str | None = None
    app_secret: str | None = None
    delivered_after_ms: float = 1000.0
    read_after_ms: float = 3000.0
    # phone_number_id -> {"waba_id", "display_phone_number"}: only used to dress the webhooks.
    phone_numbers: dict[str, dict[str, str]] = field(default_factory=dict)

    def updated(self, changes: dict[str, Any]) -> SandboxConfig:
        known = {f.name for f in fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise ValueError(f"unknown config keys: {', '.join(unknown)}")
        config = replace(self, **changes)
        config.validate()
        return config

    def validate(self) -> None:
        if not isinstance(self.latency_ms, (int, float)) or self.latency_ms < 0:
            raise ValueError("latency_ms must be a number >= 0")
        if not isinstance(self.max_recorded, int) or self.max_recorded < 1:
            raise ValueError("max_recorded must be a positive integer")
        if self.phone_mps_cap is not None and (not isinstance(self.phone_mps_cap, int) or self.phone_mps_cap < 1):
            raise ValueError("phone_mps_cap must be a positive integer or null")
        if self.pair_rate_limit_ms is not None and (
            not isinstance(self.pair_rate_limit_ms, (int, float)) or self.pair_rate_limit_ms <= 0
        ):
            raise ValueError("pair_rate_limit_ms must be a number > 0 or null")
        for name in ("hang_seconds", "delivered_after_ms", "read_after_ms"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"{name} must be a number >= 0")
        parse_outcome(self.default_outcome)

    def as_dict(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["app_secret"] = "***" if self.app_secret else None
        return data


def parse_outcome(outcome: Any) -> tuple[str, int | None]:
    """`("error", 131026)`, `("http", 500)`, `("ok", None)`, ...; raises ValueError for anything unknown."""
    if not isinstance(outcome, str) or not outcome:
        raise ValueError(f"outcome must be a non-empty string: {OUTCOME_HELP}")
    if outcome in ("ok", "hang", "drop"):
        return outcome, None
    for prefix in ("error:", "failed_webhook:", "slow:"):
        if outcome.startswith(prefix) and outcome[len(prefix) :].isdecimal():
            return prefix[:-1], int(outcome[len(prefix) :])
    for prefix in ("http", "raw"):
        rest = outcome[len(prefix) :]
        if outcome.startswith(prefix) and rest.isdecimal() and 400 <= int(rest) <= 599:
            return prefix, int(rest)
    raise ValueError(f"unknown outcome {outcome!r}: {OUTCOME_HELP}")


def _digits(number: Any) -> str:
    return "".join(ch for ch in str(number) if ch.isdigit())


def meta_error(code: int, *, details: str | None = None, message: str | None = None) -> dict[str, Any]:
    """Meta's error envelope, as the Graph API answers it."""
    text = message or _ERROR_MESSAGES.get(code, "An unknown error occurred")
    return {
        "error": {
            "message": f"(#{code}) {text}",
            "type": "OAuthException",
            "code": code,
            "error_data": {"messaging_product": "whatsapp", "details": details or text},
            "fbtrace_id": "A" + secrets.token_urlsafe(16),
        }
    }


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type=JSON)


def _error_response(code: int, *, status: int | None = None, details: str | None = None) -> web.Response:
    return _json(meta_error(code, details=details), status or _ERROR_STATUS.get(code, 400))


def _validate_message(body: Any) -> str | None:
    """What is wrong with a send's body (Meta answers these with code 100), or None."""
    if not isinstance(body, dict):
        return "The request body must be a JSON object"
    if body.get("messaging_product") != "whatsapp":
        return "The parameter messaging_product is required and must be 'whatsapp'"
    to = body.get("to")
    if not isinstance(to, str) or not _digits(to):
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


class Sandbox:
    """The state of the fake Graph API, and its aiohttp handlers."""

    def __init__(self, config: SandboxConfig):
        config.validate()
        self.initial_config = config
        self.run_id = secrets.token_hex(4)
        self.reset()

    def reset(self) -> None:
        self.config = replace(self.initial_config, phone_numbers=dict(self.initial_config.phone_numbers))
        self.scripts: dict[str, deque[str]] = {}
        # Recording must not cap throughput: one tuple per POST,
        # (seq, received_at, phone_number_id, authorization, raw body, outcome, to digits).
        # Bounded so a long `make run` cannot eat the machine's memory (~0.7 KB a record); the oldest go first.
        self.requests: deque[tuple] = deque(maxlen=self.config.max_recorded)
        self.seq = itertools.count(1)
        self.wamids = itertools.count(1)
        self.cap_windows: dict[str, deque[float]] = defaultdict(deque)
        self.last_accepted: dict[tuple[str, str], float] = {}
        self.templates: dict[str | None, list[dict[str, Any]]] = {None: _template_catalogue()}
        self.webhook_queue: list[tuple[float, int, str, dict[str, Any]]] = []
        self.webhook_seq = itertools.count(1)
        self.webhook_stats = {"posts": 0, "statuses": 0, "failed_posts": 0, "retries": 0}
        self.generation = getattr(self, "generation", 0) + 1

    # ---- Graph API -------------------------------------------------------------------------------------------

    def _next_outcome(self, to_digits: str) -> str:
        script = self.scripts.get(to_digits)
        if script:
            outcome = script.popleft()
            if not script:
                del self.scripts[to_digits]
            return outcome
        return self.config.default_outcome

    def _over_cap(self, phone_number_id: str, now: float) -> bool:
        cap = self.config.phone_mps_cap
        if cap is None:
            return False
        window = self.cap_windows[phone_number_id]
        while window and window[0] <= now - 1.0:
            window.popleft()
        return len(window) >= cap

    def _pair_limited(self, phone_number_id: str, to_digits: str, now: float) -> bool:
        gap_ms = self.config.pair_rate_limit_ms
        if gap_ms is None:
            return False
        last = self.last_accepted.get((phone_number_id, to_digits))
        return last is not None and now - last < gap_ms / 1000.0

    def _count_accepted(self, phone_number_id: str, to_digits: str, now: float) -> None:
        # Only accepted sends count, as Meta counts the messages it takes, not the ones it refuses.
        if self.config.phone_mps_cap is not None:
            self.cap_windows[phone_number_id].append(now)
        if self.config.pair_rate_limit_ms is not None:
            self.last_accepted[(phone_number_id, to_digits)] = now

    async def send_message(self, request: web.Request) -> web.StreamResponse:
        received_at = time.time()
        phone_number_id = request.match_info["phone_number_id"]
        authorization = request.headers.get("Authorization", "")
        raw = await request.read()
        seq = next(self.seq)
        config = self.config
        generation = self.generation

        body: Any = None
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
                problem = _validate_message(body)
            if problem:
                outcome = "invalid"
            else:
                to_digits = _digits(body["to"])
                if self._over_cap(phone_number_id, received_at):
                    outcome = "capped"
                elif self._pair_limited(phone_number_id, to_digits, received_at):
                    outcome = "pair_limited"
                else:
                    outcome = self._next_outcome(to_digits)
                    if _accepted(outcome):
                        self._count_accepted(phone_number_id, to_digits, received_at)
        if not to_digits and isinstance(body, dict):
            to_digits = _digits(body.get("to", ""))
        self.requests.append((seq, received_at, phone_number_id, authorization, raw, outcome, to_digits))

        kind, number = (outcome, 0) if outcome in _REFUSALS else parse_outcome(outcome)
        if kind == "drop":
            # Read the request, then close the socket without a byte of answer (the outcome is unknown to the client).
            request.protocol.force_close()
            if request.transport is not None:
                request.transport.close()
            return web.Response(status=204)
        if kind == "hang":
            await asyncio.sleep(config.hang_seconds)
            return _error_response(2, status=504, details="The sandbox hung on purpose")
        delay = config.latency_ms / 1000.0 + (number / 1000.0 if kind == "slow" else 0.0)
        if delay:
            await asyncio.sleep(delay)

        if kind == "unauthorized":
            return _error_response(190, details="Missing or malformed Authorization: Bearer <access token>")
        if kind == "invalid":
            return _error_response(100, status=400, details=problem)
        if kind == "capped":
            return _error_response(130429, status=400, details=f"More than {config.phone_mps_cap} messages/s")
        if kind == "pair_limited":
            details = f"Same recipient within {config.pair_rate_limit_ms:g} ms on this phone number"
            return _error_response(131056, status=400, details=details)
        if kind == "error":
            return _error_response(number)
        if kind == "http":
            return _error_response(_STATUS_CODES.get(number, 100), status=number)
        if kind == "raw":
            return web.Response(text=f"<html><body>{number} sandbox proxy error</body></html>", status=number)

        wamid = f"wamid.SBX{self.run_id}{next(self.wamids):012d}"
        # A reset while this send waited its latency means a new test: its statuses would leak into that one.
        if config.webhook_url and generation == self.generation:
            self._schedule_statuses(phone_number_id, wamid, to_digits, kind, number, received_at)
        return _json(
            {
                "messaging_product": "whatsapp",
                "contacts": [{"input": body["to"], "wa_id": to_digits}],
                "messages": [{"id": wamid, "message_status": "accepted"}],
            }
        )

    async def message_templates(self, request: web.Request) -> web.Response:
        authorization = request.headers.get("Authorization", "")
        if authorization[:7].lower() != "bearer " or not authorization[7:].strip():
            return _error_response(190, details="Missing or malformed Authorization: Bearer <access token>")
        waba_id = request.match_info["waba_id"]
        query = request.query
        try:
            limit = int(query.get("limit", "25"))
            start = int(base64.urlsafe_b64decode(query["after"]).decode()) if "after" in query else 0
        except (ValueError, UnicodeDecodeError):
            return _error_response(100, status=400, details="Invalid limit or after cursor")
        if not 1 <= limit <= 1000 or start < 0:
            return _error_response(100, status=400, details="limit must be 1..1000")
        templates = self.templates.get(waba_id, self.templates[None])
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
        return _json(data)

    # ---- webhooks back ---------------------------------------------------------------------------------------

    def _schedule_statuses(
        self, phone_number_id: str, wamid: str, to_digits: str, kind: str, code: int | None, sent_at: float
    ) -> None:
        config = self.config
        queue = self.webhook_queue
        delivered_at = sent_at + config.delivered_after_ms / 1000.0
        if kind == "failed_webhook":
            status = {"id": wamid, "status": "failed", "recipient_id": to_digits, "errors": [_status_error(code)]}
            heapq.heappush(queue, (delivered_at, next(self.webhook_seq), phone_number_id, status))
            return
        conversation = {"id": hashlib.md5(to_digits.encode()).hexdigest(), "origin": {"type": "marketing"}}
        pricing = {"billable": True, "pricing_model": "PMP", "category": "marketing", "type": "regular"}
        delivered = {
            "id": wamid,
            "status": "delivered",
            "recipient_id": to_digits,
            "conversation": conversation,
            "pricing": pricing,
        }
        heapq.heappush(queue, (delivered_at, next(self.webhook_seq), phone_number_id, delivered))
        read = {"id": wamid, "status": "read", "recipient_id": to_digits}
        read_at = sent_at + max(config.read_after_ms, config.delivered_after_ms) / 1000.0
        heapq.heappush(queue, (read_at, next(self.webhook_seq), phone_number_id, read))

    def _due_statuses(self, now: float) -> dict[str, list[dict[str, Any]]]:
        due: dict[str, list[dict[str, Any]]] = defaultdict(list)
        queue = self.webhook_queue
        while queue and queue[0][0] <= now:
            due_at, _, phone_number_id, status = heapq.heappop(queue)
            due[phone_number_id].append({**status, "timestamp": str(int(due_at))})
        return due

    def webhook_body(self, phone_number_id: str, statuses: list[dict[str, Any]]) -> bytes:
        phone = self.config.phone_numbers.get(phone_number_id, {})
        envelope = {
            "object": "whatsapp_business_account",
            "entry": [
                {
                    "id": phone.get("waba_id", "0"),
                    "changes": [
                        {
                            "value": {
                                "messaging_product": "whatsapp",
                                "metadata": {
                                    "display_phone_number": phone.get("display_phone_number", "15550000000"),
                                    "phone_number_id": phone_number_id,
                                },
                                "statuses": statuses,
                            },
                            "field": "messages",
                        }
                    ],
                }
            ],
        }
        return orjson.dumps(envelope)

    async def _post_webhook(
        self, session: ClientSession, url: str, secret: str | None, body: bytes, count: int
    ) -> None:
        headers = {"Content-Type": JSON, "User-Agent": "facebookexternalua"}
        if secret:
            signature = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
            headers["X-Hub-Signature-256"] = f"sha256={signature}"
        generation = self.generation
        for attempt in range(WEBHOOK_ATTEMPTS):
            if attempt:
                self.webhook_stats["retries"] += 1
                # Bounded retry with backoff (0.5 s, 1 s, 2 s): enough to ride out a restart of the receiver.
                await asyncio.sleep(0.5 * 2 ** (attempt - 1))
                if generation != self.generation:
                    return  # a reset happened meanwhile: these statuses belong to a finished test
            try:
                async with session.post(url, data=body, headers=headers) as response:
                    await response.read()
                    if 200 <= response.status < 300:
                        self.webhook_stats["posts"] += 1
                        self.webhook_stats["statuses"] += count
                        return
            except Exception as exc:  # any failure (refused, reset, timeout) is retried the same way
                logger.debug("webhook post failed: %s", exc)
        self.webhook_stats["failed_posts"] += 1

    async def webhook_loop(self) -> None:
        limit = asyncio.Semaphore(WEBHOOK_CONCURRENCY)
        tasks: set[asyncio.Task] = set()
        timeout = ClientTimeout(total=10)
        async with ClientSession(connector=TCPConnector(limit=WEBHOOK_CONCURRENCY), timeout=timeout) as session:

            async def post(url: str, secret: str | None, body: bytes, count: int) -> None:
                async with limit:
                    await self._post_webhook(session, url, secret, body, count)

            while True:
                await asyncio.sleep(WEBHOOK_FLUSH_SECONDS)
                url, secret = self.config.webhook_url, self.config.app_secret
                if not url:
                    continue
                for phone_number_id, statuses in self._due_statuses(time.time()).items():
                    for start in range(0, len(statuses), WEBHOOK_BATCH_MAX):
                        batch = statuses[start : start + WEBHOOK_BATCH_MAX]
                        body = self.webhook_body(phone_number_id, batch)
                        task = asyncio.create_task(post(url, secret, body, len(batch)))
                        tasks.add(task)
                        task.add_done_callback(tasks.discard)

    # ---- control API -----------------------------------------------------------------------------------------

    async def health(self, request: web.Request) -> web.Response:
        return _json({"status": "ok", "pid": os.getpid()})

    async def _json_body(self, request: web.Request) -> dict[str, Any]:
        try:
            data = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            raise web.HTTPBadRequest(text='{"error": "invalid JSON"}', content_type=JSON) from None
        if not isinstance(data, dict):
            raise web.HTTPBadRequest(text='{"error": "a JSON object is required"}', content_type=JSON)
        return data

    async def control_script(self, request: web.Request) -> web.Response:
        data = await self._json_body(request)
        to, outcomes = data.get("to"), data.get("outcomes")
        if not isinstance(to, str) or not _digits(to) or not isinstance(outcomes, list):
            return _json({"error": 'expected {"to": "+57...", "outcomes": [...]}'}, 400)
        try:
            for outcome in outcomes:
                parse_outcome(outcome)
        except ValueError as exc:
            return _json({"error": str(exc)}, 400)
        script = self.scripts.setdefault(_digits(to), deque())
        if data.get("replace"):
            script.clear()
        script.extend(outcomes)
        if not script:
            del self.scripts[_digits(to)]
        return _json({"to": to, "pending": list(script)})

    async def control_config(self, request: web.Request) -> web.Response:
        if request.method == "POST":
            changes = await self._json_body(request)
            try:
                self.config = self.config.updated(changes)
            except (TypeError, ValueError) as exc:
                return _json({"error": str(exc)}, 400)
        return _json(self.config.as_dict())

    async def control_templates(self, request: web.Request) -> web.Response:
        data = await self._json_body(request)
        templates, waba_id = data.get("templates"), data.get("waba_id")
        if not isinstance(templates, list) or not all(isinstance(t, dict) and t.get("name") for t in templates):
            return _json({"error": 'expected {"templates": [{"name", "language", ...}], "waba_id"?}'}, 400)
        for number, template in enumerate(templates, start=1):
            template.setdefault("id", f"9{number:014d}")
        self.templates[str(waba_id) if waba_id is not None else None] = templates
        return _json({"count": len(templates)})

    async def control_reset(self, request: web.Request) -> web.Response:
        self.reset()
        return _json({"status": "reset"})

    async def control_requests(self, request: web.Request) -> web.Response:
        query = request.query
        try:
            since = int(query.get("since", "0"))
        except ValueError:
            return _json({"error": "since must be an integer"}, 400)
        to = _digits(query["to"]) if "to" in query else None
        phone = query.get("phone_number_id")
        records = []
        for seq, received_at, phone_number_id, authorization, raw, outcome, to_digits in self.requests:
            if seq <= since or (to is not None and to_digits != to) or (phone and phone_number_id != phone):
                continue
            try:
                body = orjson.loads(raw)
            except orjson.JSONDecodeError:
                body = raw.decode(errors="replace")
            records.append(
                {
                    "seq": seq,
                    "received_at": received_at,
                    "phone_number_id": phone_number_id,
                    "authorization": authorization,
                    "to": to_digits,
                    "body": body,
                    "outcome": outcome,
                }
            )
        return _json({"requests": records, "last_seq": self.requests[-1][0] if self.requests else since})

    async def control_stats(self, request: web.Request) -> web.Response:
        return _json(self.stats())

    def stats(self) -> dict[str, Any]:
        """Per phone number: totals, outcomes, the busiest one-second window and per-second counts."""
        by_phone: dict[str, list[tuple[float, str]]] = defaultdict(list)
        accepted_by_pair: dict[tuple[str, str], list[float]] = defaultdict(list)
        for record in self.requests:
            by_phone[record[2]].append((record[1], record[5]))
            if _accepted(record[5]):
                accepted_by_pair[(record[2], record[6])].append(record[1])
        min_gap: dict[str, float] = {}
        for (phone_number_id, _), times in accepted_by_pair.items():
            times.sort()
            for earlier, later in zip(times, times[1:], strict=False):
                gap = later - earlier
                if gap < min_gap.get(phone_number_id, float("inf")):
                    min_gap[phone_number_id] = gap
        phones = {}
        for phone_number_id, arrivals in by_phone.items():
            times = sorted(t for t, _ in arrivals)
            outcomes: dict[str, int] = defaultdict(int)
            for _, outcome in arrivals:
                outcomes[outcome] += 1
            accepted = sorted(t for t, outcome in arrivals if _accepted(outcome))
            per_second: dict[str, int] = defaultdict(int)
            for t in times:
                per_second[str(int(t))] += 1
            phones[phone_number_id] = {
                "total": len(times),
                "accepted": len(accepted),
                "outcomes": dict(outcomes),
                "max_in_one_second": _max_in_window(times, 1.0),
                "max_accepted_in_one_second": _max_in_window(accepted, 1.0),
                # Shortest time between two accepted sends to one recipient (null when none was repeated).
                "min_repeat_gap_seconds": round(min_gap[phone_number_id], 6) if phone_number_id in min_gap else None,
                "first_at": times[0],
                "last_at": times[-1],
                "per_second": dict(per_second),
            }
        return {
            "total": len(self.requests),
            "dropped_records": self.requests[0][0] - 1 if self.requests else 0,
            "phone_numbers": phones,
            "webhooks": {**self.webhook_stats, "pending_statuses": len(self.webhook_queue)},
        }

    def make_app(self) -> web.Application:
        app = web.Application(client_max_size=4 * 1024**2)
        app.add_routes(
            [
                web.get("/_sandbox/health", self.health),
                web.post("/_sandbox/script", self.control_script),
                web.get("/_sandbox/config", self.control_config),
                web.post("/_sandbox/config", self.control_config),
                web.post("/_sandbox/templates", self.control_templates),
                web.post("/_sandbox/reset", self.control_reset),
                web.get("/_sandbox/requests", self.control_requests),
                web.get("/_sandbox/stats", self.control_stats),
                web.post("/{version}/{phone_number_id}/messages", self.send_message),
                web.get("/{version}/{waba_id}/message_templates", self.message_templates),
            ]
        )

        async def webhook_worker(app: web.Application):
            task = asyncio.create_task(self.webhook_loop())
            yield
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

        app.cleanup_ctx.append(webhook_worker)
        return app


_REFUSALS = frozenset({"unauthorized", "invalid", "capped", "pair_limited"})


def _accepted(outcome: str) -> bool:
    return outcome in ("ok",) or outcome.startswith(("slow:", "failed_webhook:"))


def _status_error(code: int | None) -> dict[str, Any]:
    code = code or 131026
    text = _ERROR_MESSAGES.get(code, "Message failed to send")
    return {
        "code": code,
        "title": text,
        "message": text,
        "error_data": {"details": f"{text} (sandbox)"},
        "href": "https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes/",
    }


def _max_in_window(times: list[float], width: float) -> int:
    """Most arrivals in any window [t, t + width) starting at an arrival (two pointers over sorted times)."""
    best = 0
    end = 0
    for start, t in enumerate(times):
        end = max(end, start)
        while end < len(times) and times[end] < t + width:
            end += 1
        best = max(best, end - start)
    return best


async def _exit_with_parent(app: web.Application):
    """Stop when the process that started us is gone, so a crashed test run leaves no sandbox behind."""
    parent = os.getppid()

    async def watch() -> None:
        while os.getppid() == parent:
            await asyncio.sleep(1.0)
        os.kill(os.getpid(), signal.SIGTERM)

    task = asyncio.create_task(watch())
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def run(config: SandboxConfig, *, host: str, port: int, exit_with_parent: bool = False) -> None:
    sandbox = Sandbox(config)
    app = sandbox.make_app()
    # Arrival times are what tests and benchmarks count per second: a full garbage collection over a large
    # request log would stall the loop and timestamp the queued requests in one burst. Objects alive now are
    # never collected, and young-generation collections run rarely.
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
    if exit_with_parent:
        app.cleanup_ctx.append(_exit_with_parent)
    web.run_app(
        app,
        # uvloop: a quarter less CPU per request than asyncio's loop (bench-delivery), so timestamps lag less.
        loop=uvloop.new_event_loop(),
        host=host,
        port=port,
        access_log=None,
        # A hung request must not hold a stop for long: tests stop the sandbox with SIGTERM.
        shutdown_timeout=0.5,
        print=lambda *_: print(f"WhatsApp sandbox listening on http://{host}:{port}", flush=True),
        backlog=1024,
    )
