"""The faults, each run in its own thread at its time (so several overlap): kill -9 and a delayed restart of any
process, Redis killed and restarted empty or flushed, PostgreSQL restarted, the sandbox failing, hanging or slow,
Meta's statuses delivered twice or in a burst, a worker on a skewed clock."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
import urllib.request
from collections import Counter
from pathlib import Path

from benchmarks.chaos.receivers import StatusRelay
from benchmarks.chaos.scenario import Action
from benchmarks.chaos.stack import Stack
from tests.delivery_support import postgres_start, postgres_stop, redis_cli_binary, redis_kill, redis_port, redis_start

FAKETIME_LIBS = (
    "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1",
    "/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1",
    "/usr/lib/faketime/libfaketime.so.1",
)


# The skewed worker's sitecustomize (see its docstring).
SKEWED_SITE = Path(__file__).resolve().parent / "skewed_site"


def faketime_library() -> str | None:
    """Debian's libfaketime (package `faketime`), or None when it is not installed."""
    if not shutil.which("faketime"):
        return None
    return next((path for path in FAKETIME_LIBS if Path(path).exists()), None)


class Faults:
    def __init__(self, *, stack: Stack, relay: StatusRelay):
        self.stack = stack
        self.relay = relay
        self.done: Counter[str] = Counter()
        self.skipped: Counter[str] = Counter()
        self.errors: list[str] = []
        # (from, to, what): when a worker was down or restarted, or PostgreSQL was away (time.time()): an attempt
        # cut there may be made again (an event re-delivered after its lease).
        self.interruptions: list[tuple[float, float, str]] = []
        # Sandbox outcome faults may overlap: the last to end puts the default back.
        self.sandbox_lock = threading.Lock()
        self.sandbox_faults = 0
        # Redis and PostgreSQL faults do not overlap each other's restart (one server, one pid file).
        self.redis_lock = threading.Lock()
        self.pg_lock = threading.Lock()

    def run(self, action: Action) -> None:
        try:
            getattr(self, f"do_{action.kind}")(action.params)
        except Exception as exc:
            self.errors.append(f"{action.kind}: {exc!r}")

    def _kill_and_restart(self, name: str, down_for: float) -> None:
        self.stack.kill9(name)
        time.sleep(down_for)
        self.stack.restart(name)

    def do_kill_worker(self, params: dict) -> None:
        began = time.time()
        self._kill_and_restart(f"worker{params['worker']}", params["down_for"])
        self.interruptions.append((began, time.time(), f"kill_worker worker{params['worker']}"))
        self.done["kill_worker"] += 1

    def do_kill_web(self, params: dict) -> None:
        self._kill_and_restart("web", params["down_for"])
        self.done["kill_web"] += 1

    def do_kill_beat(self, params: dict) -> None:
        self._kill_and_restart("beat", params["down_for"])
        self.done["kill_beat"] += 1

    def do_kill_sandbox(self, params: dict) -> None:
        self._kill_and_restart("sandbox", params["down_for"])
        self.done["kill_sandbox"] += 1

    def do_redis_restart(self, params: dict) -> None:
        with self.redis_lock:
            redis_kill()
            time.sleep(params["down_for"])
            redis_start()
        self.done["redis_restart"] += 1

    def do_redis_flush(self, params: dict) -> None:
        with self.redis_lock:
            subprocess.run(
                [redis_cli_binary(), "-p", str(redis_port()), "FLUSHALL"], check=True, timeout=30, capture_output=True
            )
        self.done["redis_flush"] += 1

    def do_postgres_restart(self, params: dict) -> None:
        with self.pg_lock:
            began = time.time()
            postgres_stop()
            time.sleep(params["down_for"])
            postgres_start()
            self.interruptions.append((began, time.time(), "postgres_restart"))
        self.done["postgres_restart"] += 1

    def _sandbox_outcome(self, outcome: str, down_for: float) -> None:
        with self.sandbox_lock:
            self.sandbox_faults += 1
            self.sandbox_config({"default_outcome": outcome})
        time.sleep(down_for)
        with self.sandbox_lock:
            self.sandbox_faults -= 1
            if self.sandbox_faults == 0:
                self.sandbox_config({"default_outcome": "ok"})

    def sandbox_config(self, changes: dict) -> None:
        request = urllib.request.Request(
            f"{self.stack.sandbox_url}/_sandbox/config",
            data=json.dumps(changes).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(request, timeout=10) as answer:
                    answer.read()
                    return
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)  # the sandbox is being restarted by another fault

    def do_sandbox_5xx(self, params: dict) -> None:
        self._sandbox_outcome(params["outcome"], params["down_for"])
        self.done["sandbox_5xx"] += 1

    def do_sandbox_hang(self, params: dict) -> None:
        self._sandbox_outcome("hang", params["down_for"])
        self.done["sandbox_hang"] += 1

    def do_sandbox_slow(self, params: dict) -> None:
        self._sandbox_outcome(params["outcome"], params["down_for"])
        self.done["sandbox_slow"] += 1

    def do_status_duplicates(self, params: dict) -> None:
        self.relay.duplicate_until = max(self.relay.duplicate_until, time.time() + params["down_for"])
        time.sleep(params["down_for"])
        self.done["status_duplicates"] += 1

    def do_status_burst(self, params: dict) -> None:
        self.relay.hold_until = max(self.relay.hold_until, time.time() + params["down_for"])
        time.sleep(params["down_for"])
        self.done["status_burst"] += 1

    def do_clock_skew(self, params: dict) -> None:
        library = faketime_library()
        if library is None:
            self.skipped["clock_skew"] += 1
            return
        name = f"worker{params['worker']}"
        # The worker restarted on a clock `skew` away (libfaketime; FAKETIME_DONT_RESET keeps forked pool
        # children on the same offset), for `down_for` seconds, then restarted on the true clock.
        skewed = {"LD_PRELOAD": library, "FAKETIME": params["skew"], "FAKETIME_DONT_RESET": "1",
                  "FAKETIME_NO_CACHE": "1", "DONT_FAKE_MONOTONIC": "1",
                  # A skewed wall clock, not a skewed monotonic one (both spellings of libfaketime's switch): faking
                  # the monotonic clock made a sleep fail with EINVAL, which no real clock skew does.
                  "FAKETIME_DONT_FAKE_MONOTONIC": "1",
                  # and its `time.sleep` made to wait in `select` (libfaketime's clock_nanosleep fails with EINVAL):
                  "PYTHONPATH": f"{SKEWED_SITE}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}  # fmt: skip
        # Each restart is a warm shutdown whose leftover pool children are killed: an interruption too.
        began = time.time()
        self.stack.restart(name, extra_env=skewed)
        self.interruptions.append((began, time.time(), f"clock_skew restart {name}"))
        time.sleep(params["down_for"])
        began = time.time()
        self.stack.restart(name)
        self.interruptions.append((began, time.time(), f"clock_skew restart {name}"))
        self.done["clock_skew"] += 1
