"""The stack under test: the Procfile's own command lines, the sandbox, and a supervisor that restarts what the
scenario kills (and notes anything that died on its own)."""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]

# Shorter delivery timings than production's, so that a 3-minute run reaches quiescence: the lease a killed
# worker's sends wait out, the grace an unknown outcome waits for its status, the sweeps. Meta's rules (6 s
# same-number spacing, 6 attempts) stay as they are.
STACK_SETTINGS = {
    "DELIVERY_LEASE_SECONDS": "20",
    "DELIVERY_UNKNOWN_GRACE_SECONDS": "10",
    "DELIVERY_READ_TIMEOUT_SECONDS": "5",
    "DELIVERY_CONNECT_TIMEOUT_SECONDS": "2",
    "DELIVERY_SWEEP_INTERVAL": "2",
    "DELIVERY_START_DUE_INTERVAL": "2",
    "DELIVERY_RETRY_BASE_SECONDS": "0.5",
    "DELIVERY_RETRY_MAX_SECONDS": "5",
    "MARKETING_LIMIT_HOLD_SECONDS": "30",
    "MESSAGING_LIMIT_WINDOW_SECONDS": "60",
    "API_RATE_LIMITS": "6000/min,1000000/hour",
    "WEBHOOKS_ALLOW_PRIVATE": "true",
    "LOG_FORMAT": "json",
    "PYTHONUNBUFFERED": "1",
}
APP_SECRET = "chaos-app-secret"


def procfile_lines() -> dict[str, str]:
    lines = {}
    for raw in (PROJECT_ROOT / "Procfile").read_text().splitlines():
        if ":" in raw and not raw.lstrip().startswith("#"):
            name, command = raw.split(":", 1)
            lines[name.strip()] = command.strip()
    return lines


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Proc:
    """One supervised process (its own session: kill -9 of the group reaches gunicorn's and Celery's children)."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    popen: subprocess.Popen | None = None
    starts: int = 0
    killed_by_scenario: int = 0
    unexpected_exits: list[str] = field(default_factory=list)
    expect_down: bool = False
    extra_env: dict[str, str] = field(default_factory=dict)
    # A lower nice value than the stack's (the sandbox's, see Stack): applied when the harness may, else ignored.
    niceness: int = 0

    def start(self) -> None:
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child keeps it
        self.popen = subprocess.Popen(
            self.argv,
            cwd=PROJECT_ROOT,
            env={**self.env, **self.extra_env},
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        if self.niceness:
            with contextlib.suppress(OSError):  # not permitted (an unprivileged user): the default priority
                os.setpriority(os.PRIO_PROCESS, self.popen.pid, self.niceness)
        self.starts += 1
        self.expect_down = False

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def kill9(self) -> None:
        self.expect_down = True
        self.killed_by_scenario += 1
        self._signal_group(signal.SIGKILL)
        if self.popen is not None:
            try:
                self.popen.wait(timeout=20)
            except subprocess.TimeoutExpired:
                pass

    def stop(self) -> None:
        """A graceful stop, as a supervisor does it: SIGTERM to the main process only (Celery's warm shutdown lets
        its pool finish; gunicorn stops its workers), SIGKILL of the group when it takes longer than 30 s."""
        self.expect_down = True
        if self.popen is not None and self.popen.poll() is None:
            try:
                os.kill(self.popen.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        if self.popen is not None:
            try:
                self.popen.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._signal_group(signal.SIGKILL)
                self.popen.wait(timeout=10)
        self._signal_group(signal.SIGKILL)  # pool children of a main process that left first

    def _signal_group(self, sig: int) -> None:
        if self.popen is None:
            return
        try:
            os.killpg(self.popen.pid, sig)
        except ProcessLookupError:
            pass


class Stack:
    """web, worker (several), beat and the sandbox, as the Procfile starts them, supervised."""

    def __init__(self, *, workdir: Path, workers: int, worker_concurrency: int, web_concurrency: int):
        self.workdir = workdir
        self.web_port, self.sandbox_port, self.relay_port = free_port(), free_port(), free_port()
        self.journal_path = workdir / "sandbox-journal.jsonl"
        venv_bin = str(Path(sys.executable).parent)
        self.env = {
            **os.environ,
            **STACK_SETTINGS,
            "PATH": f"{venv_bin}:{os.environ.get('PATH', '')}",
            "PORT": str(self.web_port),
            "WEB_CONCURRENCY": str(web_concurrency),
            "WORKER_CONCURRENCY": str(worker_concurrency),
            "WHATSAPP_GRAPH_URL": f"http://127.0.0.1:{self.sandbox_port}/v23.0",
            "WHATSAPP_APP_SECRET": APP_SECRET,
            "CELERY_BEAT_SCHEDULE_FILENAME": str(workdir / "celerybeat-schedule"),
        }
        lines = procfile_lines()
        self.release_line = lines["release"]
        # Loopback only: the Procfile binds every interface, as a container does.
        web = lines["web"].replace("0.0.0.0:", "127.0.0.1:")
        self.procs: dict[str, Proc] = {"web": self._proc("web", web)}
        for n in range(1, workers + 1):
            # Each worker line as the Procfile has it, with a node name of its own (two hosts would differ).
            self.procs[f"worker{n}"] = self._proc(f"worker{n}", f"{lines['worker']} --hostname chaos{n}@%h")
        self.procs["beat"] = self._proc("beat", lines["beat"])
        sandbox = [
            sys.executable, "-m", "sandbox", "--host", "127.0.0.1", "--port", str(self.sandbox_port),
            "--latency-ms", "50", "--webhook-url", f"http://127.0.0.1:{self.relay_port}/v1/webhooks/whatsapp",
            "--app-secret", APP_SECRET, "--sent-after-ms", "200", "--delivered-after-ms", "1000",
            "--read-after-ms", "3000", "--hang-seconds", "8",
        ]  # fmt: skip
        sandbox_env = {**self.env, "SANDBOX_JOURNAL": str(self.journal_path)}
        # The sandbox stands in for Meta's edge, whose clock no process of ours can starve: it runs ahead of the
        # stack in the CPU's queue, so the arrival times it journals are when the POSTs came, not when a loaded
        # 2-core box let it read them (a stall there stamps what queued meanwhile at once).
        self.procs["sandbox"] = Proc("sandbox", sandbox, sandbox_env, workdir / "sandbox.log", niceness=-10)
        self.lock = threading.Lock()
        self._stop = threading.Event()
        self._monitor: threading.Thread | None = None
        self.on_sandbox_start = None  # the scenario re-applies the sandbox's run-time config

    def _proc(self, name: str, line: str) -> Proc:
        expanded = os.path.expandvars(re.sub(r"\$\{(\w+):-([^}]*)\}", lambda m: self.env.get(m[1], m[2]), line))
        return Proc(name, shlex.split(expanded), self.env, self.workdir / f"{name}.log")

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    @property
    def sandbox_url(self) -> str:
        return f"http://127.0.0.1:{self.sandbox_port}"

    def release(self) -> None:
        done = subprocess.run(
            shlex.split(self.release_line), cwd=PROJECT_ROOT, env=self.env, capture_output=True, text=True, timeout=600
        )
        if done.returncode:
            raise RuntimeError(f"release failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")

    def start_all(self) -> None:
        for proc in self.procs.values():
            proc.start()
        self._monitor = threading.Thread(target=self._watch, daemon=True)
        self._monitor.start()

    def _watch(self) -> None:
        """A supervisor: a process that exited without the scenario killing it is noted, then restarted."""
        while not self._stop.wait(0.5):
            with self.lock:
                for proc in self.procs.values():
                    if not proc.alive() and not proc.expect_down:
                        code = proc.popen.returncode if proc.popen else None
                        proc.unexpected_exits.append(f"exit {code} at {time.time():.1f}")
                        proc.start()
                        if proc.name == "sandbox" and self.on_sandbox_start:
                            threading.Thread(target=self.on_sandbox_start, daemon=True).start()

    def kill9(self, name: str) -> None:
        with self.lock:
            self.procs[name].kill9()

    def restart(self, name: str, *, extra_env: dict[str, str] | None = None) -> None:
        with self.lock:
            proc = self.procs[name]
            if proc.alive():
                proc.stop()
            proc.extra_env = extra_env or {}
            proc.start()
        if name == "sandbox" and self.on_sandbox_start:
            self.on_sandbox_start()

    def stop_all(self) -> None:
        self._stop.set()
        if self._monitor:
            self._monitor.join(timeout=5)
        # All at once: a worker's warm shutdown may wait for a pump's chunk (up to ~20 s).
        stoppers = [threading.Thread(target=proc.stop) for proc in self.procs.values()]
        for stopper in stoppers:
            stopper.start()
        for stopper in stoppers:
            stopper.join(timeout=60)
