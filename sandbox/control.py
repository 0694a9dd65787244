"""The control API that tests, benchmarks and `make run` drive (`/_sandbox/...`; the client is `sandbox.process`).

GET  /_sandbox/health       {"status": "ok", "pid"}
POST /_sandbox/script       {"to", "outcomes": [...], "replace"?}: outcomes for the next sends to `to`
GET  /_sandbox/config       the config in force; POST changes some of it
POST /_sandbox/templates    {"templates": [...], "waba_id"?}: what message_templates serves
POST /_sandbox/reset        a new run: no requests, scripts, rate windows or pending webhooks
GET  /_sandbox/requests     the arrival log (?since=, ?to=, ?phone_number_id=)
GET  /_sandbox/stats        per phone number: totals, outcomes, busiest second; webhook counters
POST /_sandbox/template_errors  {"name", "code"}: every send of that template answers Meta's error `code`
                            (132015 paused, 132016 disabled); `"code": null` ends it
POST /_sandbox/template_webhook {"field", "value", "waba_id"?, "time"?}: posts one signed template webhook
                            (message_template_status_update, template_category_update,
                            message_template_quality_update) to the configured webhook_url at once; answers
                            {"status": <the receiver's HTTP status>, "answered_at": <Unix time of its answer>}
(Users' webhooks and BSUIDs: sandbox/user_webhooks.py; messaging limits and account webhooks: sandbox/limits.py.)
A user is keyed by the digits of its number, or by its BSUID for a send by `recipient` (scripts, ?to=).
"""

from __future__ import annotations

import os
import time
from collections import defaultdict, deque
from typing import Any

import orjson
from aiohttp import web

from sandbox.outcomes import is_accepted, parse_outcome
from sandbox.responses import json_object, json_response
from sandbox.signed_posts import envelope, post_envelope
from sandbox.state import OUTCOME, PHONE_NUMBER_ID, RECEIVED_AT, SEQ, TO_DIGITS, SandboxState
from sandbox.users import recipient_key

# The template webhooks the control API posts on demand (Meta's field names).
TEMPLATE_WEBHOOK_FIELDS = frozenset(
    {"message_template_status_update", "template_category_update", "message_template_quality_update"}
)


class ControlRoutes:
    """The `/_sandbox/...` handlers over the sandbox's state."""

    def __init__(self, state: SandboxState):
        self.state = state

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/_sandbox/health", self.health),
            web.post("/_sandbox/script", self.script),
            web.get("/_sandbox/config", self.config),
            web.post("/_sandbox/config", self.config),
            web.post("/_sandbox/templates", self.templates),
            web.post("/_sandbox/reset", self.reset),
            web.get("/_sandbox/requests", self.requests),
            web.get("/_sandbox/stats", self.stats),
            web.post("/_sandbox/template_errors", self.template_errors),
            web.post("/_sandbox/template_webhook", self.template_webhook),
        ]

    async def health(self, request: web.Request) -> web.Response:
        return json_response({"status": "ok", "pid": os.getpid()})

    async def script(self, request: web.Request) -> web.Response:
        data = await json_object(request)
        to, outcomes = data.get("to"), data.get("outcomes")
        if not isinstance(to, str) or not recipient_key(to) or not isinstance(outcomes, list):
            return json_response({"error": 'expected {"to": "+57..." or a BSUID, "outcomes": [...]}'}, 400)
        try:
            for outcome in outcomes:
                parse_outcome(outcome)
        except ValueError as exc:
            return json_response({"error": str(exc)}, 400)
        scripts = self.state.scripts
        key = recipient_key(to)
        script = scripts.setdefault(key, deque())
        if data.get("replace"):
            script.clear()
        script.extend(outcomes)
        if not script:
            del scripts[key]
        return json_response({"to": to, "pending": list(script)})

    async def config(self, request: web.Request) -> web.Response:
        if request.method == "POST":
            changes = await json_object(request)
            try:
                self.state.config = self.state.config.updated(changes)
            except (TypeError, ValueError) as exc:
                return json_response({"error": str(exc)}, 400)
        return json_response(self.state.config.as_dict())

    async def templates(self, request: web.Request) -> web.Response:
        data = await json_object(request)
        templates, waba_id = data.get("templates"), data.get("waba_id")
        if not isinstance(templates, list) or not all(isinstance(t, dict) and t.get("name") for t in templates):
            return json_response({"error": 'expected {"templates": [{"name", "language", ...}], "waba_id"?}'}, 400)
        for number, template in enumerate(templates, start=1):
            template.setdefault("id", f"9{number:014d}")
        self.state.templates[str(waba_id) if waba_id is not None else None] = templates
        return json_response({"count": len(templates)})

    async def reset(self, request: web.Request) -> web.Response:
        self.state.reset()
        return json_response({"status": "reset"})

    async def requests(self, request: web.Request) -> web.Response:
        query = request.query
        try:
            since = int(query.get("since", "0"))
        except ValueError:
            return json_response({"error": "since must be an integer"}, 400)
        to = recipient_key(query["to"]) if "to" in query else None
        phone = query.get("phone_number_id")
        log = self.state.requests
        records = []
        for seq, received_at, phone_number_id, authorization, raw, outcome, to_digits, path in log:
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
                    "path": path,
                }
            )
        return json_response({"requests": records, "last_seq": log[-1][SEQ] if log else since})

    async def stats(self, request: web.Request) -> web.Response:
        return json_response(sandbox_stats(self.state))

    async def template_errors(self, request: web.Request) -> web.Response:
        data = await json_object(request)
        name, code = data.get("name"), data.get("code")
        if not isinstance(name, str) or not name or not (code is None or (isinstance(code, int) and code > 0)):
            return json_response({"error": 'expected {"name": "<template>", "code": 132015 | null}'}, 400)
        if code is None:
            self.state.template_errors.pop(name, None)
        else:
            self.state.template_errors[name] = code
        return json_response({"template_errors": self.state.template_errors})

    async def template_webhook(self, request: web.Request) -> web.Response:
        data = await json_object(request)
        field, value = data.get("field"), data.get("value")
        if field not in TEMPLATE_WEBHOOK_FIELDS or not isinstance(value, dict):
            return json_response(
                {"error": f'expected {{"field": one of {sorted(TEMPLATE_WEBHOOK_FIELDS)}, "value"}}'}, 400
            )
        config = self.state.config
        if not config.webhook_url:
            return json_response({"error": "no webhook_url configured"}, 409)
        moment = data.get("time")
        at = moment if isinstance(moment, int) else None
        status = await post_envelope(
            config, envelope(waba_id=str(data.get("waba_id") or "0"), field=field, value=value, at=at), timeout=30
        )
        return json_response({"status": status, "answered_at": time.time()})


def sandbox_stats(state: SandboxState) -> dict[str, Any]:
    """Per phone number: totals, outcomes, the busiest one-second window and per-second counts."""
    by_phone: dict[str, list[tuple[float, str]]] = defaultdict(list)
    accepted_by_pair: dict[tuple[str, str], list[float]] = defaultdict(list)
    for record in state.requests:
        by_phone[record[PHONE_NUMBER_ID]].append((record[RECEIVED_AT], record[OUTCOME]))
        if is_accepted(record[OUTCOME]):
            accepted_by_pair[(record[PHONE_NUMBER_ID], record[TO_DIGITS])].append(record[RECEIVED_AT])
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
        accepted = sorted(t for t, outcome in arrivals if is_accepted(outcome))
        per_second: dict[str, int] = defaultdict(int)
        for t in times:
            per_second[str(int(t))] += 1
        phones[phone_number_id] = {
            "total": len(times),
            "accepted": len(accepted),
            "outcomes": dict(outcomes),
            "max_in_one_second": max_in_window(times, 1.0),
            "max_accepted_in_one_second": max_in_window(accepted, 1.0),
            # Shortest time between two accepted sends to one recipient (null when none was repeated).
            "min_repeat_gap_seconds": round(min_gap[phone_number_id], 6) if phone_number_id in min_gap else None,
            "first_at": times[0],
            "last_at": times[-1],
            "per_second": dict(per_second),
        }
    return {
        "total": len(state.requests),
        "dropped_records": state.requests[0][SEQ] - 1 if state.requests else 0,
        "phone_numbers": phones,
        "webhooks": {**state.webhook_stats, "pending_statuses": len(state.webhook_queue)},
    }


def max_in_window(times: list[float], width: float) -> int:
    """Most arrivals in any window [t, t + width) starting at an arrival (two pointers over sorted times)."""
    best = 0
    end = 0
    for start, t in enumerate(times):
        end = max(end, start)
        while end < len(times) and times[end] < t + width:
            end += 1
        best = max(best, end - start)
    return best
