"""Real processes for delivery tests and benchmarks: Celery workers and beat against the test database.

Workers are `celery -A config worker` subprocesses with DATABASE_URL pointing at pytest's test database, so
rows must be committed (transactional tests) to be seen. Short delivery timings come from the environment.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

PROJECT_ROOT = Path(__file__).resolve().parent.parent

# Short timings for tests (the contract's 6 s same-number spacing and 6 attempts stay as they are).
FAST_DELIVERY_SETTINGS: dict[str, Any] = {
    "DELIVERY_LEASE_SECONDS": 8.0,
    "DELIVERY_READ_TIMEOUT_SECONDS": 1.5,
    "DELIVERY_CONNECT_TIMEOUT_SECONDS": 1.0,
    "DELIVERY_RETRY_BASE_SECONDS": 0.2,
    "DELIVERY_RETRY_MAX_SECONDS": 1.0,
    "DELIVERY_SWEEP_INTERVAL": 1.0,
    "DELIVERY_START_DUE_INTERVAL": 1.0,
}


def database_url_for(name: str) -> str:
    """The environment's DATABASE_URL with its database name replaced (pytest's test database)."""
    parts = urlsplit(os.environ["DATABASE_URL"])
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, parts.fragment))


def wait_for(predicate: Callable[[], Any], *, timeout: float, interval: float = 0.1, message: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message or predicate}")
        time.sleep(interval)


class CeleryProcess:
    """A `celery -A config worker|beat` subprocess with its own log file."""

    def __init__(self, kind: str, *, env: dict[str, str], concurrency: int = 2, extra_args: list[str] | None = None):
        self.kind = kind
        self.env = env
        self.concurrency = concurrency
        self.extra_args = extra_args or []
        self.process: subprocess.Popen | None = None
        self.log_path = ""

    def start(self, *, wait_ready: bool = True) -> CeleryProcess:
        log = tempfile.NamedTemporaryFile(prefix=f"celery-{self.kind}-", suffix=".log", delete=False)  # noqa: SIM115
        self.log_path = log.name
        command = [sys.executable, "-m", "celery", "-A", "config", self.kind, "--loglevel", "INFO"]
        if self.kind == "worker":
            command += [
                "--pool",
                "prefork",
                "--concurrency",
                str(self.concurrency),
                "--without-heartbeat",
                "--without-gossip",
                "--without-mingle",
                "--hostname",
                f"test{os.getpid()}-{time.monotonic_ns()}@%h",
            ]
        else:
            command += ["--schedule", str(Path(tempfile.gettempdir()) / f"beat-{os.getpid()}-{time.monotonic_ns()}")]
        self.process = subprocess.Popen(
            command + self.extra_args,
            cwd=PROJECT_ROOT,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: kill -9 reaches the pool children too
        )
        log.close()
        if wait_ready and self.kind == "worker":
            wait_for(lambda: " ready." in self.log() or not self.alive(), timeout=60, message="celery worker ready")
            if not self.alive():
                raise RuntimeError(f"celery worker died:\n{self.log()}")
        return self

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log(self) -> str:
        try:
            return Path(self.log_path).read_text(errors="replace")
        except OSError:
            return ""

    def pids(self) -> list[int]:
        """The main process and its pool children (for CPU accounting)."""
        if self.process is None:
            return []
        return [self.process.pid, *child_pids(self.process.pid)]

    def kill_hard(self) -> None:
        """kill -9 of the whole worker (main process and pool children): nothing gets to clean up."""
        if self.process is not None and self.alive():
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is None:
            return
        if self.alive():
            try:
                os.killpg(self.process.pid, signal.SIGTERM)
                self.process.wait(timeout=15)
            except (subprocess.TimeoutExpired, ProcessLookupError):
                try:
                    os.killpg(self.process.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.process.wait(timeout=5)
        else:
            # Pool children of a dead main process may linger in its group.
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            os.unlink(self.log_path)
        except OSError:
            pass


def celery_env(*, database_url: str, graph_url: str, overrides: dict[str, Any] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env.update({"DATABASE_URL": database_url, "WHATSAPP_GRAPH_URL": graph_url, "PYTHONUNBUFFERED": "1"})
    for name, value in (overrides or {}).items():
        env[name] = str(value)
    return env


def broadcast_make(
    *,
    channel,
    template,
    recipients: list[tuple[str, dict] | str],
    scheduled_at: datetime | None = None,
    status: str = "PENDING",
):
    """Write a broadcast and its sends directly (as broadcast_create would, without the API's validation)."""
    from broadcasts.models import Broadcast, Send

    broadcast = Broadcast.objects.create(
        organization=channel.organization,
        channel=channel,
        template=template,
        template_name=template.name,
        language=template.language,
        campaign_name="test",
        total_recipients=len(recipients),
        scheduled_at=scheduled_at,
        status=status,
    )
    sends = []
    for index, item in enumerate(recipients):
        to, variables = (item, {"nombre": "Ana", "monto": str(index)}) if isinstance(item, str) else item
        sends.append(Send(broadcast=broadcast, index=index, to=to, variables=variables))
    Send.objects.bulk_create(sends, batch_size=1000)
    return broadcast


def max_in_any_second(times: list[float]) -> int:
    """The most events in any sliding one-second window (the cap's own measure)."""
    times = sorted(times)
    best, end = 0, 0
    for start, t in enumerate(times):
        while end < len(times) and times[end] < t + 1.0:
            end += 1
        best = max(best, end - start)
    return best


def child_pids(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (read from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def numbers(count: int, *, start: int = 0) -> list[str]:
    """Distinct valid-looking E.164 Colombian mobile numbers."""
    return [f"+57300{start + i:07d}" for i in range(count)]


def broadcast_settled(broadcast_id: str, *, statuses=("COMPLETED", "FAILED", "CANCELLED")) -> bool:
    from broadcasts.models import Broadcast

    return Broadcast.objects.filter(id=broadcast_id, status__in=statuses).exists()
