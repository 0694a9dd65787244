"""HTTP servers of the harness: the customers' event endpoints and the relay of Meta's status webhooks.

The relay stands between the sandbox and the web process's Meta webhook, as Meta's own retrying delivery does: it
takes each signed body, answers the sandbox 200 and forwards the body unchanged (signature included), retrying for
up to 90 s while web is down. The faults use it to deliver bodies twice (`status_duplicates`) or to hold them and
let them all go at once (`status_burst`).
"""

from __future__ import annotations

import http.client
import json
import queue
import random
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from http.server import BaseHTTPRequestHandler

from tests.http_server import ReceiverServer


class _Quiet(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:
        pass

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _answer(self, status: int) -> None:
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()


class Endpoints:
    """`/ok/<org>` answers 200 and counts each event id (with the time of each receipt); `/fail/<org>` answers 500;
    `/slow/<org>` answers after 12 s (past the service's 10 s bound for one attempt)."""

    def __init__(self) -> None:
        self.received: Counter[str] = Counter()
        self.arrivals: dict[str, list[float]] = {}
        self.types: Counter[str] = Counter()
        self.failing_hits = 0
        self.lock = threading.Lock()
        owner = self

        class Handler(_Quiet):
            def do_POST(self) -> None:  # noqa: N802
                body = self._body()
                if self.path.startswith("/ok/"):
                    try:
                        event = json.loads(body)
                    except ValueError:
                        self._answer(400)
                        return
                    with owner.lock:
                        owner.received[event.get("id", "")] += 1
                        owner.arrivals.setdefault(event.get("id", ""), []).append(time.time())
                        owner.types[event.get("type", "")] += 1
                    self._answer(200)
                    return
                with owner.lock:
                    owner.failing_hits += 1
                if self.path.startswith("/slow/"):
                    time.sleep(12)
                    self._answer(200)
                    return
                self._answer(500)

        self.server = ReceiverServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, kind: str, org: str) -> str:
        return f"http://127.0.0.1:{self.port}/{kind}/{org}"

    def close(self) -> None:
        self.server.shutdown()


class StatusRelay:
    def __init__(self, *, port: int, target: str, rng: random.Random):
        self.target = target
        self.rng = rng
        self.queue: queue.Queue = queue.Queue()
        self.held: list[tuple[bytes, dict[str, str]]] = []
        self.duplicate_until = 0.0
        self.hold_until = 0.0
        self.lock = threading.Lock()
        self.stats: Counter[str] = Counter()
        self.web_statuses: Counter[int] = Counter()
        # biz_opaque_callback_data -> when web first answered 200 to a body carrying a status with it.
        self.status_seen: dict[str, float] = {}
        owner = self

        class Handler(_Quiet):
            def do_POST(self) -> None:  # noqa: N802
                body = self._body()
                headers = {
                    k: v for k, v in self.headers.items() if k.lower() in ("content-type", "x-hub-signature-256")
                }
                owner.take(body, headers)
                self._answer(200)

        self.server = ReceiverServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        for _ in range(6):
            threading.Thread(target=self._forwarder, daemon=True).start()
        threading.Thread(target=self._releaser, daemon=True).start()

    def take(self, body: bytes, headers: dict[str, str]) -> None:
        now = time.time()
        with self.lock:
            self.stats["bodies"] += 1
            if now < self.hold_until:
                self.held.append((body, headers))
                self.stats["held"] += 1
                return
            duplicate = now < self.duplicate_until
        self.queue.put((body, headers, 0.0))
        if duplicate:
            self.stats["duplicated"] += 1
            self.queue.put((body, headers, now + self.rng.uniform(0, 3)))

    def _releaser(self) -> None:
        while True:
            time.sleep(0.2)
            with self.lock:
                if self.held and time.time() >= self.hold_until:
                    held, self.held = self.held, []
                else:
                    continue
            for body, headers in held:  # all at once: a burst
                self.queue.put((body, headers, 0.0))

    def _forwarder(self) -> None:
        while True:
            body, headers, not_before = self.queue.get()
            wait = not_before - time.time()
            if wait > 0:
                time.sleep(wait)
            deadline = time.time() + 90
            while True:
                status = self._post(body, headers)
                if status is not None:
                    self.web_statuses[status] += 1
                if status is not None and status < 500 and status != 429:
                    self.stats["forwarded"] += 1
                    if status == 200:
                        self._seen(body, time.time())
                    break
                if time.time() > deadline:
                    self.stats["given_up"] += 1
                    break
                time.sleep(0.5)

    def _seen(self, body: bytes, at: float) -> None:
        try:
            envelope = json.loads(body)
            statuses = [
                status
                for entry in envelope.get("entry", [])
                for change in entry.get("changes", [])
                for status in change.get("value", {}).get("statuses", [])
            ]
        except (ValueError, AttributeError):
            return
        with self.lock:
            for status in statuses:
                callback = status.get("biz_opaque_callback_data")
                if callback and callback not in self.status_seen:
                    self.status_seen[callback] = at

    def _post(self, body: bytes, headers: dict[str, str]) -> int | None:
        request = urllib.request.Request(self.target, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=30) as answer:
                answer.read()
                return answer.status
        except urllib.error.HTTPError as exc:
            return exc.code
        except (urllib.error.URLError, OSError, http.client.HTTPException):
            # (an answer cut off by web's kill -9 mid-body: IncompleteRead) tried again, like a refused connection
            return None

    def idle(self) -> bool:
        with self.lock:
            return self.queue.empty() and not self.held

    def close(self) -> None:
        self.server.shutdown()
