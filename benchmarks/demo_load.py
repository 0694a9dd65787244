"""The demo's own load on the demo stack (`make run`: its own PostgreSQL and Redis, web + worker + beat + sandbox).

Posts broadcasts at once (default 2000 and 5000 recipients) with the demo token, with a customer endpoint
registered (a receiver in this process, so outbound events are delivered too), waits until every broadcast is
COMPLETED with every send READ and every event received, then counts the error lines in the processes' log:
`database is locked`, `Traceback`, ERROR/CRITICAL log lines and 5xx answers in gunicorn's access log.

    make demo-load                                   # starts its own demo (temp copy, free ports), then stops it
    make demo-load DEMO_LOAD_ARGS="--sizes 500,1000"
    make run 2>&1 | tee var/demo.log                 # or against a running `make run`:
    .venv/bin/python benchmarks/demo_load.py --base-url http://127.0.0.1:8000 --log var/demo.log

Prints one JSON summary; exits 1 when a broadcast did not finish, an event is missing or the log has errors.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_ROOT))  # run as a script by `make demo-load`

from tests.http_server import ReceiverServer  # noqa: E402

# Error lines of the demo's processes (honcho prefixes each with "HH:MM:SS name.N |").
LOG_PATTERNS = {
    "database_is_locked": re.compile(r"database is locked"),
    "traceback": re.compile(r"Traceback \(most recent call last\)"),
    "error_lines": re.compile(r"\b(ERROR|CRITICAL)\b"),
    "http_5xx": re.compile(r'HTTP/1\.[01]" 5\d\d '),
}
COPY_IGNORE = shutil.ignore_patterns(".venv", "var", ".git", "staticfiles", "__pycache__", "*.pyc", ".pytest_cache")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Demo:
    """A `scripts/run-demo.sh` (honcho + Procfile.dev) running in its own copy of the tree."""

    base_url: str
    log_path: Path
    process: subprocess.Popen | None = None
    folder: Path | None = None
    # The whole log, shutdown included, kept once stop() removed the folder.
    final_log: str = ""

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return self.final_log

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            # honcho stops its processes on SIGINT (Ctrl-C), as `make run` does; then the launcher stops PostgreSQL
            # and Redis (they run in a session of their own, out of this group's reach).
            for sig, wait in ((signal.SIGINT, 60), (signal.SIGTERM, 30), (signal.SIGKILL, 5)):
                try:
                    os.killpg(self.process.pid, sig)
                    self.process.wait(timeout=wait)
                    break
                except subprocess.TimeoutExpired:
                    continue
                except ProcessLookupError:
                    break
        if self.folder is not None:
            self.final_log = self.log()
            shutil.rmtree(self.folder, ignore_errors=True)


def demo_start(*, env_overrides: dict[str, str] | None = None, timeout: float = 90.0) -> Demo:
    """Copies the tree to a temporary folder (its own var/: the PostgreSQL and Redis data) and starts the demo there
    on free ports (web, sandbox, PostgreSQL, Redis: never a running `make run`'s), exactly as `make run` does;
    returns once the API answers."""
    folder = Path(tempfile.mkdtemp(prefix="demo-load-"))
    shutil.copytree(PROJECT_ROOT, folder / "app", ignore=COPY_IGNORE)
    port, sandbox_port = free_port(), free_port()
    log_path = folder / "demo.log"
    # Nothing of the caller's servers (a test run's, a `make run`'s): the demo starts its own.
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL") and not k.startswith("TEST_")}
    venv_bin = Path(sys.executable).parent
    env.update({"PATH": f"{venv_bin}:{env.get('PATH', '')}", "PORT": str(port), "SANDBOX_PORT": str(sandbox_port)})
    env.update({"DEMO_PG_PORT": "0", "DEMO_REDIS_PORT": "0"})  # free ports
    env.update(env_overrides or {})
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            ["bash", "scripts/run-demo.sh"],
            cwd=folder / "app",
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    demo = Demo(base_url=f"http://127.0.0.1:{port}", log_path=log_path, process=process, folder=folder)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the demo exited ({process.returncode}):\n{demo.log()[-4000:]}")
        if "API token" in demo.log():
            try:
                with urllib.request.urlopen(f"{demo.base_url}/v1/health", timeout=2) as answer:
                    if answer.status == 200:
                        return demo
            except (urllib.error.URLError, OSError):
                pass
        time.sleep(0.3)
    demo.stop()
    raise RuntimeError("the demo did not start in time")


def demo_credentials(log: str) -> tuple[str, str]:
    """(token, channel_id) as seed_demo printed them (the last run's)."""
    tokens = re.findall(r"API token \(all scopes, shown once\):\s*\n(?:\S+ \S+ \| )?(\S+)", log)
    channels = re.findall(r"Channel\s+: (\S+)", log)
    if not tokens or not channels:
        raise RuntimeError("no demo token / channel in the log (run-demo.sh prints them at start)")
    return tokens[-1], channels[-1]


def log_errors(log: str) -> dict[str, int | list[str]]:
    counts: dict[str, int | list[str]] = {name: 0 for name in LOG_PATTERNS}
    samples: list[str] = []
    for line in log.splitlines():
        for name, pattern in LOG_PATTERNS.items():
            if pattern.search(line):
                counts[name] += 1  # type: ignore[operator]
                if len(samples) < 10:
                    samples.append(line[:300])
    counts["samples"] = samples
    return counts


class EventReceiver:
    """The customer's endpoint: a 200 for every event, counted by type (an event id counts once)."""

    def __init__(self) -> None:
        self.ids: set[str] = set()
        self.types: Counter[str] = Counter()
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
                with receiver.lock:
                    if body["id"] not in receiver.ids:
                        receiver.ids.add(body["id"])
                        receiver.types[body["type"]] += 1
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ReceiverServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/events"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass
class Api:
    base_url: str
    token: str
    calls: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def call(self, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
        with self._lock:
            self.calls += 1
        request = urllib.request.Request(
            f"{self.base_url}{path}",
            data=json.dumps(body).encode() if body is not None else None,
            method=method,
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as answer:
                return answer.status, json.loads(answer.read() or b"{}")
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"{}")


def broadcast_body(*, channel_id: str, size: int, offset: int) -> dict:
    return {
        "template_name": "welcome_v2",
        "language": "es",
        "channel_id": channel_id,
        "campaign_name": f"demo-load-{size}",
        "recipients": [
            {"to": f"+57300{offset + i:07d}", "variables": {"nombre": "Ana", "monto": str(i)}, "meta_data": {"i": i}}
            for i in range(size)
        ],
    }


def run_load(
    *, base_url: str, token: str, channel_id: str, sizes: list[int], timeout: float, poll: float = 3.0
) -> dict:
    """Posts the broadcasts at once and waits for the end state; returns the measurements."""
    api = Api(base_url=base_url, token=token)
    receiver = EventReceiver()
    try:
        status, endpoint = api.call("POST", "/v1/webhooks", {"url": receiver.url})
        if status != 201:
            raise RuntimeError(f"POST /v1/webhooks answered {status}: {endpoint}")
        started = time.monotonic()
        accepted: dict[int, tuple[int, dict]] = {}

        def post(position: int, size: int) -> None:
            accepted[position] = api.call(
                "POST", "/v1/messages/bulk", broadcast_body(channel_id=channel_id, size=size, offset=position * 100_000)
            )

        threads = [threading.Thread(target=post, args=(n, size)) for n, size in enumerate(sizes)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for position in range(len(sizes)):
            code, answer = accepted[position]
            if code != 202:
                raise RuntimeError(f"POST /v1/messages/bulk answered {code}: {str(answer)[:500]}")
        ids = [accepted[n][1]["broadcast_id"] for n in range(len(sizes))]
        total = sum(sizes)
        expected_events = 3 * total + len(sizes)  # sent, delivered, read per send; completed per broadcast
        final: dict[str, dict] = {}
        done_at = None
        deadline = started + timeout
        while time.monotonic() < deadline:
            time.sleep(poll)
            for broadcast_id in ids:
                code, answer = api.call("GET", f"/v1/messages/bulk/{broadcast_id}")
                if code == 200:
                    final[broadcast_id] = answer
            finished = len(final) == len(ids) and all(
                b["status"] == "COMPLETED" and b["counts"]["read"] == b["total_recipients"] for b in final.values()
            )
            if finished and done_at is None:
                done_at = time.monotonic()
            if finished and len(receiver.ids) >= expected_events:
                break
        events_at = time.monotonic()
        return {
            "sizes": sizes,
            "broadcasts": {
                b: {"status": final[b]["status"], "counts": final[b]["counts"]} if b in final else None for b in ids
            },
            "all_completed_and_read": done_at is not None,
            "seconds_to_all_read": round(done_at - started, 1) if done_at else None,
            "events_expected": expected_events,
            "events_received": len(receiver.ids),
            "events_by_type": dict(sorted(receiver.types.items())),
            "seconds_to_all_events": round(events_at - started, 1) if len(receiver.ids) >= expected_events else None,
            "api_calls": api.calls,
            "endpoint_id": endpoint.get("id"),
        }
    finally:
        receiver.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="2000,5000", help="recipients of each broadcast, posted at once")
    parser.add_argument("--base-url", help="a running `make run` (default: start a demo of our own)")
    parser.add_argument("--log", help="the running demo's log (its output), for the token and the error count")
    parser.add_argument("--token", help="the demo token (default: read from the log)")
    parser.add_argument("--channel-id", help="the demo channel (default: read from the log)")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds to wait for the end state")
    parser.add_argument("--keep-log", help="copy the started demo's log here")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    demo = None
    if args.base_url:
        base_url, log_path = args.base_url.rstrip("/"), Path(args.log) if args.log else None
    else:
        demo = demo_start()
        base_url, log_path = demo.base_url, demo.log_path
    try:
        log_before = log_path.read_text(errors="replace") if log_path else ""
        token, channel_id = (args.token, args.channel_id)
        if not (token and channel_id):
            found_token, found_channel = demo_credentials(log_before)
            token, channel_id = token or found_token, channel_id or found_channel
        result = run_load(base_url=base_url, token=token, channel_id=channel_id, sizes=sizes, timeout=args.timeout)
        time.sleep(2)  # the last lines of the processes
        log_after = log_path.read_text(errors="replace") if log_path else ""
        result["log"] = log_errors(log_after[len(log_before) :]) if log_path else None
        if demo and args.keep_log:
            shutil.copy(demo.log_path, args.keep_log)
    finally:
        if demo:
            demo.stop()
    print(json.dumps(result, indent=2))
    errors = result["log"] and any(v for k, v in result["log"].items() if k != "samples")
    ok = result["all_completed_and_read"] and result["events_received"] >= result["events_expected"] and not errors
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
