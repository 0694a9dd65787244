"""The API traffic: broadcasts created, steered and retried, dry runs, suppressions and webhooks, over HTTP.

Every create carries an Idempotency-Key, so a request cut by a killed web process is sent again without creating
twice. What the invariants need later (suppression times, retries, answers 500) is recorded here.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from benchmarks.chaos.scenario import Action, pool_number


@dataclass
class Ledger:
    """What the traffic did, for the invariants and the report."""

    broadcasts: dict[int, str] = field(default_factory=dict)  # create ref -> broadcast id
    org_of: dict[str, str] = field(default_factory=dict)  # broadcast id -> organization
    # (org, number) -> [(added: answer time, removed: request time or None)]
    suppressions: dict[tuple[str, str], list[list[float | None]]] = field(default_factory=lambda: defaultdict(list))
    retries: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))  # id -> answer times
    paused: set[str] = field(default_factory=set)
    statuses: Counter[str] = field(default_factory=Counter)  # "create 202", "cancel 409", ...
    answers_500: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


class Api:
    def __init__(self, *, base_url: str, tokens: dict[str, str], ledger: Ledger):
        self.base_url = base_url
        self.tokens = tokens
        self.ledger = ledger

    def call(
        self, org: str, method: str, path: str, body: Any = None, *, label: str, key: str | None = None,
        patience: float = 60.0,
    ) -> tuple[int, Any]:  # fmt: skip
        """One request, sent again while the web process is unreachable or answers 503 (a supervisor restarts it),
        for at most `patience` seconds; the last answer's status and body (0: never reached)."""
        headers = {"Authorization": f"Bearer {self.tokens[org]}", "Content-Type": "application/json"}
        if key:
            headers["Idempotency-Key"] = key
        data = json.dumps(body).encode() if body is not None else None
        deadline = time.monotonic() + patience
        status, answer = 0, None
        while True:
            request = urllib.request.Request(f"{self.base_url}{path}", data=data, method=method, headers=headers)
            try:
                with urllib.request.urlopen(request, timeout=60) as response:
                    status, answer = response.status, json.loads(response.read() or b"null")
            except urllib.error.HTTPError as exc:
                status = exc.code
                try:
                    answer = json.loads(exc.read() or b"null")
                except ValueError:
                    answer = None
            except (urllib.error.URLError, OSError, ValueError):
                status, answer = 0, None
            if status >= 500 and status != 503:
                with self.ledger.lock:
                    self.ledger.answers_500.append(f"{method} {path} {status} {str(answer)[:200]}")
            # Unreachable or 503 (Redis or PostgreSQL down): a client tries again; anything else is the answer.
            if status not in (0, 503) or time.monotonic() > deadline:
                break
            time.sleep(1.0)
        with self.ledger.lock:
            self.ledger.statuses[f"{label} {status}"] += 1
        return status, answer


def recipients_of(params: dict[str, Any]) -> list[dict[str, Any]]:
    # Valid Colombian mobiles (+57 300 ...): never a pool number (+57 301 ...).
    fresh = [f"+57300{(params['fresh_start'] + i) % 10_000_000:07d}" for i in range(params["fresh"])]
    pooled = [pool_number(params["org"], n) for n in params["pool"]]
    return [
        {"to": to, "variables": {"nombre": "Ana", "monto": str(i)}, "meta_data": {"i": i}}
        for i, to in enumerate(fresh + pooled)
    ]


class Traffic:
    def __init__(self, *, api: Api, seed: int, channels: dict[str, str]):
        self.api = api
        self.seed = seed
        self.ledger = api.ledger
        self.channels = channels  # phone_number_id -> channel id

    def run(self, action: Action) -> None:
        handler = getattr(self, f"do_{action.kind}")
        try:
            handler(action.params)
        except Exception as exc:  # the harness's own bug: reported, never hidden
            with self.ledger.lock:
                self.ledger.errors.append(f"{action.kind}: {exc!r}")

    def _body(self, params: dict[str, Any], **extra: Any) -> dict[str, Any]:
        body = {
            "template_name": params["template"],
            "language": "es",
            "channel_id": params["phone"],
            "campaign_name": f"chaos-{self.seed}",
            "recipients": recipients_of(params),
            **extra,
        }
        if params.get("scheduled_in"):
            at = time.time() + params["scheduled_in"]
            body["scheduled_at"] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(at)) + f".{int(at % 1 * 1000):03d}Z"
        return body

    def _target(self, params: dict[str, Any]) -> str | None:
        return self.ledger.broadcasts.get(params["ref"])

    def do_create(self, params: dict[str, Any]) -> None:
        key = f"chaos-{self.seed}-{params['ref']}"
        status, answer = self.api.call(
            params["org"], "POST", "/v1/messages/bulk", self._body(params), label="create", key=key, patience=120
        )
        if status == 202:
            with self.ledger.lock:
                self.ledger.broadcasts[params["ref"]] = answer["broadcast_id"]
                self.ledger.org_of[answer["broadcast_id"]] = params["org"]
        else:
            with self.ledger.lock:
                self.ledger.errors.append(f"create ref {params['ref']}: {status} {str(answer)[:300]}")

    def do_idem(self, params: dict[str, Any]) -> None:
        """The same create twice with one key: one broadcast."""
        params = {**params, "template": "aviso_chaos", "fresh_start": 9_000_000 + int(params["size"]) * 1000,
                  "fresh": params["size"], "pool": [], "scheduled_in": 0}  # fmt: skip
        key = f"chaos-{self.seed}-idem-{params['fresh_start']}-{time.monotonic_ns()}"
        first = self.api.call(params["org"], "POST", "/v1/messages/bulk", self._body(params), label="create", key=key)
        again = self.api.call(params["org"], "POST", "/v1/messages/bulk", self._body(params), label="replay", key=key)
        if first[0] == 202:
            with self.ledger.lock:
                self.ledger.org_of[first[1]["broadcast_id"]] = params["org"]
            if again[0] != 202 or again[1].get("broadcast_id") != first[1]["broadcast_id"]:
                with self.ledger.lock:
                    self.ledger.errors.append(f"idempotent replay answered {again[0]} {str(again[1])[:200]}")

    def do_dry_run(self, params: dict[str, Any]) -> None:
        params = {**params, "template": "welcome_v2", "fresh_start": 0, "fresh": params["size"], "pool": []}
        self.api.call(params["org"], "POST", "/v1/messages/bulk", self._body(params, dry_run=True), label="dry_run")

    def _steer(self, params: dict[str, Any], verb: str, body: Any = None) -> tuple[int, Any, str | None]:
        broadcast_id = self._target(params)
        if broadcast_id is None:
            return 0, None, None
        org = self.ledger.org_of[broadcast_id]
        status, answer = self.api.call(org, "POST", f"/v1/messages/bulk/{broadcast_id}/{verb}", body, label=verb)
        return status, answer, broadcast_id

    def do_cancel(self, params: dict[str, Any]) -> None:
        self._steer(params, "cancel")

    def do_pause(self, params: dict[str, Any]) -> None:
        status, _, broadcast_id = self._steer(params, "pause")
        if status == 200 and broadcast_id:
            with self.ledger.lock:
                self.ledger.paused.add(broadcast_id)
            time.sleep(params["resume_after"])
            self.resume(broadcast_id)

    def resume(self, broadcast_id: str) -> None:
        org = self.ledger.org_of[broadcast_id]
        status, _ = self.api.call(org, "POST", f"/v1/messages/bulk/{broadcast_id}/resume", label="resume")
        if status in (200, 409):
            with self.ledger.lock:
                self.ledger.paused.discard(broadcast_id)

    def do_retry(self, params: dict[str, Any]) -> None:
        status, answer, broadcast_id = self._steer(params, "retry", None)
        if status == 200 and broadcast_id and answer.get("retried"):
            with self.ledger.lock:
                self.ledger.retries[broadcast_id].append(time.time())

    def do_poll(self, params: dict[str, Any]) -> None:
        broadcast_id = self._target(params)
        if broadcast_id:
            org = self.ledger.org_of[broadcast_id]
            self.api.call(org, "GET", f"/v1/messages/bulk/{broadcast_id}", label="status")
            self.api.call(org, "GET", f"/v1/messages/bulk/{broadcast_id}/recipients?limit=100", label="recipients")

    def do_suppress(self, params: dict[str, Any]) -> None:
        body = {"to": params["number"], "reason": "chaos"}
        status, _ = self.api.call(params["org"], "POST", "/v1/suppressions", body, label="suppress")
        if status in (200, 201):
            with self.ledger.lock:
                entries = self.ledger.suppressions[(params["org"], params["number"])]
                if not entries or entries[-1][1] is not None:
                    entries.append([time.time(), None])

    def do_unsuppress(self, params: dict[str, Any]) -> None:
        started = time.time()
        number = params["number"].replace("+", "%2B")
        status, _ = self.api.call(params["org"], "DELETE", f"/v1/suppressions/{number}", label="unsuppress")
        if status == 204:
            with self.ledger.lock:
                entries = self.ledger.suppressions[(params["org"], params["number"])]
                if entries and entries[-1][1] is None:
                    entries[-1][1] = started

    def do_webhook_failing(self, params: dict[str, Any]) -> None:
        url = self.failing_url(params["mode"], params["org"])
        self.api.call(params["org"], "POST", "/v1/webhooks", {"url": url}, label="webhook_register")

    failing_url = None  # set by the runner: (mode, org) -> URL
