"""Start the WhatsApp sandbox as a real subprocess and drive its control API (tests, benchmarks, `make run`).

    sandbox = start_sandbox(latency_ms=5, webhook_url="http://127.0.0.1:8000/v1/webhooks/whatsapp", app_secret="s")
    settings.WHATSAPP_GRAPH_URL = sandbox.graph_url            # http://127.0.0.1:<port>/v23.0
    sandbox.script("+573001112233", ["http500", "ok"])
    ...
    sandbox.stop()

No Django import: usable from plain scripts.
"""

from __future__ import annotations

import atexit
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import weakref
from pathlib import Path
from typing import Any

import requests

PROJECT_ROOT = Path(__file__).resolve().parent.parent
GRAPH_VERSION = "v23.0"
# A cold Python start plus aiohttp import takes ~0.3 s; a loaded CI box is given much longer.
STARTUP_TIMEOUT_SECONDS = 20.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class SandboxError(RuntimeError):
    pass


# Sandboxes started by this process and not stopped yet: stopped at interpreter exit at the latest.
_running: weakref.WeakSet[SandboxProcess] = weakref.WeakSet()


@atexit.register
def _stop_all() -> None:
    for sandbox in list(_running):
        sandbox.stop()


class SandboxProcess:
    """A running sandbox: its URLs and a thin client of its control API (`/_sandbox/...`)."""

    def __init__(self, process: subprocess.Popen, *, host: str, port: int, log_path: str):
        self.process = process
        self.host = host
        self.port = port
        self.log_path = log_path
        self.url = f"http://{host}:{port}"
        # What WHATSAPP_GRAPH_URL must be set to (the version is part of the base URL, as in production).
        self.graph_url = f"{self.url}/{GRAPH_VERSION}"
        self._http = requests.Session()

    def __enter__(self) -> SandboxProcess:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<SandboxProcess {self.url} pid={self.process.pid}>"

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def log(self) -> str:
        try:
            return Path(self.log_path).read_text(errors="replace")
        except OSError:
            return ""

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._http.request(method, f"{self.url}{path}", timeout=10, **kwargs)
        if response.status_code >= 400:
            raise SandboxError(f"{method} {path}: {response.status_code} {response.text}")
        return response.json()

    def health(self) -> bool:
        try:
            return self._http.get(f"{self.url}/_sandbox/health", timeout=1).status_code == 200
        except requests.RequestException:
            return False

    def script(self, to: str, outcomes: list[str], *, replace: bool = False) -> list[str]:
        """Queue outcomes for sends to `to` (consumed in order, then the default outcome): returns what is pending."""
        return self._call("POST", "/_sandbox/script", json={"to": to, "outcomes": outcomes, "replace": replace})[
            "pending"
        ]

    def config(self, **changes: Any) -> dict[str, Any]:
        """Change settings at run time; returns the whole config. Keys: latency_ms, default_outcome, phone_mps_cap,
        pair_rate_limit_ms, webhook_url, app_secret, delivered_after_ms, read_after_ms, sent_after_ms, hang_seconds,
        phone_numbers, username_users, marketing_blocked_regions."""
        if not changes:
            return self._call("GET", "/_sandbox/config")
        return self._call("POST", "/_sandbox/config", json=changes)

    def set_templates(self, templates: list[dict[str, Any]], *, waba_id: str | None = None) -> int:
        return self._call("POST", "/_sandbox/templates", json={"templates": templates, "waba_id": waba_id})["count"]

    def template_error(self, name: str, code: int | None) -> dict[str, int]:
        """Every send of template `name` answers Meta's error `code` (132015, 132016, ...); None ends it."""
        return self._call("POST", "/_sandbox/template_errors", json={"name": name, "code": code})["template_errors"]

    def template_webhook(
        self, field: str, value: dict[str, Any], *, waba_id: str, time: int | None = None
    ) -> dict[str, Any]:
        """Post one signed template webhook (`field`: message_template_status_update, template_category_update or
        message_template_quality_update) to the configured webhook_url now: `{"status", "answered_at"}`."""
        body: dict[str, Any] = {"field": field, "value": value, "waba_id": waba_id}
        if time is not None:
            body["time"] = time
        return self._call("POST", "/_sandbox/template_webhook", json=body)

    def template_status_webhook(
        self, *, event: str, name: str, language: str, waba_id: str, time: int | None = None, template_id: int = 0
    ) -> dict[str, Any]:
        """A `message_template_status_update` (APPROVED, PAUSED, DISABLED, REINSTATED, FLAGGED ...)."""
        value = {
            "event": event,
            "message_template_id": template_id or 1000,
            "message_template_name": name,
            "message_template_language": language,
            "reason": "NONE",
        }
        return self.template_webhook("message_template_status_update", value, waba_id=waba_id, time=time)

    def reset(self) -> None:
        """Forget requests, scripts, rate windows and pending webhooks; config and templates back to start values."""
        self._call("POST", "/_sandbox/reset")

    def requests(self, *, to: str | None = None, since: int = 0, phone_number_id: str | None = None) -> list[dict]:
        """Every POST to /messages or /marketing_messages received, in order: seq, received_at, phone_number_id,
        authorization, to, body, outcome, path ("messages" or "marketing_messages")."""
        params: dict[str, Any] = {"since": since}
        if to is not None:
            params["to"] = to
        if phone_number_id is not None:
            params["phone_number_id"] = phone_number_id
        return self._call("GET", "/_sandbox/requests", params=params)["requests"]

    def messaging_limits(self, **tier: Any) -> dict[str, Any]:
        """With arguments, set a messaging-limit tier (limit, window_seconds, waba_id | portfolio, waba_ids,
        customer_window_seconds; see sandbox/limits.py); without, the report: {"portfolios", "over"}."""
        if not tier:
            return self._call("GET", "/_sandbox/messaging-limits")
        return self._call("POST", "/_sandbox/messaging-limits", json=tier)

    def post_webhook(self, kind: str, **body: Any) -> dict[str, Any]:
        """Post a signed Meta webhook now: kind `inbound-message`, `business-capability` or `phone-number-quality`;
        returns {"status": the receiver's HTTP status, "envelope"}."""
        return self._call("POST", f"/_sandbox/webhooks/{kind}", json=body)

    def user_preferences(
        self,
        to: str | None,
        value: str,
        *,
        phone_number_id: str | None = None,
        user_id: str | None = None,
        timestamp: int | None = None,
    ) -> int:
        """Post Meta's signed `user_preferences` webhook (`value` "stop" or "resume") now for the user named by `to`
        (its wa_id), `user_id` (its BSUID; alone: a user with a username) or both; returns the HTTP status our
        receiver answered."""
        body: dict[str, Any] = {"value": value, "phone_number_id": phone_number_id}
        body.update({k: v for k, v in (("to", to), ("user_id", user_id), ("timestamp", timestamp)) if v is not None})
        return self._call("POST", "/_sandbox/user_preferences", json=body)["status"]

    def user_id_of(self, to: str) -> str:
        """The BSUID the sandbox answers (and names in webhooks) for the user of number `to`."""
        return self._call("GET", "/_sandbox/user_id", params={"to": to})["user_id"]

    def stats(self) -> dict[str, Any]:
        """`{"total", "phone_numbers": {id: {total, accepted, outcomes, max_in_one_second, per_second, ...}},
        "webhooks": {posts, statuses, failed_posts, retries, pending_statuses}}`."""
        return self._call("GET", "/_sandbox/stats")

    def wait_for_requests(self, count: int, *, timeout: float = 10.0, **filters: Any) -> list[dict]:
        """Poll until at least `count` matching sends arrived (raises SandboxError on timeout)."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.requests(**filters)
            if len(found) >= count:
                return found
            if time.monotonic() > deadline:
                raise SandboxError(f"expected {count} requests, got {len(found)} within {timeout}s")
            time.sleep(0.05)

    def stop(self) -> None:
        _running.discard(self)
        self._http.close()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        try:
            os.unlink(self.log_path)
        except OSError:
            pass


def _options_to_args(options: dict[str, Any]) -> list[str]:
    args: list[str] = []
    for name, value in options.items():
        if value is None:
            continue
        args += [f"--{name.replace('_', '-')}", str(value)]
    return args


def start_sandbox(
    *,
    host: str = "127.0.0.1",
    port: int | None = None,
    latency_ms: float = 0,
    webhook_url: str | None = None,
    app_secret: str | None = None,
    phone_mps_cap: int | None = None,
    pair_rate_limit_ms: float | None = None,
    delivered_after_ms: float | None = None,
    read_after_ms: float | None = None,
    default_outcome: str | None = None,
    hang_seconds: float | None = None,
    max_recorded: int | None = None,
    python: str | None = None,
) -> SandboxProcess:
    """Run `python -m sandbox` on a free loopback port and return once /_sandbox/health answers."""
    options = {
        "latency_ms": latency_ms,
        "webhook_url": webhook_url,
        "app_secret": app_secret,
        "phone_mps_cap": phone_mps_cap,
        "pair_rate_limit_ms": pair_rate_limit_ms,
        "delivered_after_ms": delivered_after_ms,
        "read_after_ms": read_after_ms,
        "default_outcome": default_outcome,
        "hang_seconds": hang_seconds,
        "max_recorded": max_recorded,
    }
    last_log = ""
    # A free port can be taken between our probe and the sandbox's bind: try a few ports.
    for _ in range(3):
        chosen = port or free_port()
        log = tempfile.NamedTemporaryFile(prefix="wa-sandbox-", suffix=".log", delete=False)  # noqa: SIM115
        command = [python or sys.executable, "-m", "sandbox", "--host", host, "--port", str(chosen)]
        # The sandbox also stops by itself if this process dies without calling stop().
        command.append("--exit-with-parent")
        process = subprocess.Popen(
            command + _options_to_args(options),
            cwd=PROJECT_ROOT,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        sandbox = SandboxProcess(process, host=host, port=chosen, log_path=log.name)
        deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
        while time.monotonic() < deadline and sandbox.alive():
            if sandbox.health():
                _running.add(sandbox)
                return sandbox
            time.sleep(0.05)
        last_log = sandbox.log()
        sandbox.stop()
        if port:
            break
    raise SandboxError(f"the WhatsApp sandbox did not start:\n{last_log}")
