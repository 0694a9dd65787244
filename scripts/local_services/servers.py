"""One PostgreSQL and one Redis-compatible server on loopback: initialise, start, check, stop.

`Servers` holds where a pair lives (binaries, data folders, logs, ports) and remembers which of the two this
launcher started, so that it stops only those (never a server another launcher runs). PostgreSQL is driven through
initdb and pg_ctl (as the unprivileged user when root, see pg_user); Redis daemonizes with a pid file and is
stopped with SIGTERM. `test_servers` makes the throwaway pair of `make test`: free ports, durability off.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from .binaries import pg_bindir, redis_binaries
from .common import ServiceError, say
from .pg_user import PG_USER, as_pg_user, pg_run, pg_uid, pg_user_prepare
from .ports import free_port

PG_DATABASE_TEST = "postgres"
# Throwaway test servers: speed over crash safety.
PG_TEST_OPTIONS = ["fsync=off", "synchronous_commit=off", "full_page_writes=off", "max_connections=200"]


@dataclass
class Servers:
    pg_bindir: Path
    pg_data: Path
    pg_log: Path  # the server's own log (pg_ctl -l, written as the server's user)
    ctl_log: Path  # what initdb and pg_ctl print
    pg_port: int
    redis_server: Path
    redis_cli: Path
    redis_dir: Path
    redis_port: int
    database: str
    started_pg: bool = False
    started_redis: bool = False

    @property
    def database_url(self) -> str:
        return f"postgres://{PG_USER}@127.0.0.1:{self.pg_port}/{self.database}"

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.redis_port}/0"

    @property
    def redis_pidfile(self) -> Path:
        return self.redis_dir / "redis.pid"

    # PostgreSQL

    def pg_init(self) -> None:
        pg_user_prepare(self.pg_bindir / "postgres", self.pg_data.parent)
        self.pg_data.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(self.pg_data, PG_USER)
        self.pg_data.chmod(0o700)
        pg_run(
            [str(self.pg_bindir / "initdb"), "-D", str(self.pg_data), "-U", PG_USER, "--auth=trust", "-E", "UTF8",
             "--no-locale", "--no-instructions"],
            log=self.ctl_log, cwd=self.pg_data.parent,
        )  # fmt: skip

    def pg_running(self) -> bool:
        if not (self.pg_data / "postmaster.pid").exists():
            return False
        done = subprocess.run(
            [*as_pg_user(), str(self.pg_bindir / "pg_ctl"), "-D", str(self.pg_data), "status"],
            cwd=self.pg_data.parent, capture_output=True,
        )  # fmt: skip
        return done.returncode == 0

    def pg_start(self, options: list[str], *, socket_dir: Path | None) -> None:
        settings = ["-c", "listen_addresses=127.0.0.1"]
        # No Unix socket for the demo (TCP only: a deep checkout's socket path would pass the 107-byte limit).
        settings += ["-k", str(socket_dir)] if socket_dir else ["-c", "unix_socket_directories="]
        for option in options:
            settings += ["-c", option]
        pg_run(
            [str(self.pg_bindir / "pg_ctl"), "-D", str(self.pg_data), "-l", str(self.pg_log), "-w", "-t", "60",
             "-o", shlex.join(["-p", str(self.pg_port), *settings]), "start"],
            log=self.ctl_log, cwd=self.pg_data.parent,
        )  # fmt: skip
        self.started_pg = True

    def pg_stop(self, mode: str = "fast") -> None:
        if not self.pg_running():
            return
        pg_run(
            [str(self.pg_bindir / "pg_ctl"), "-D", str(self.pg_data), "-m", mode, "-w", "-t", "60", "stop"],
            log=self.ctl_log, cwd=self.pg_data.parent,
        )  # fmt: skip

    def pg_database_ensure(self) -> None:
        """The demo's own database (not the `postgres` maintenance one)."""
        psql = [str(self.pg_bindir / "psql"), "-X", "-h", "127.0.0.1", "-p", str(self.pg_port), "-U", PG_USER, "-d"]
        exists = subprocess.run(
            [*psql, "postgres", "-tAc", f"SELECT 1 FROM pg_database WHERE datname = '{self.database}'"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
        if exists != "1":
            subprocess.run([*psql, "postgres", "-qc", f'CREATE DATABASE "{self.database}"'], check=True)

    # Redis

    def redis_ping(self) -> bool:
        done = subprocess.run(
            [str(self.redis_cli), "-p", str(self.redis_port), "ping"], capture_output=True, text=True, timeout=5
        )
        return done.stdout.strip() == "PONG"

    def redis_running(self) -> bool:
        try:
            pid = int(self.redis_pidfile.read_text().strip())
            os.kill(pid, 0)
        except (OSError, ValueError):
            return False
        return self.redis_ping()

    def redis_start(self, *, persistent: bool) -> None:
        self.redis_dir.mkdir(parents=True, exist_ok=True)
        # Persistence: the demo keeps a snapshot (the broker's queues survive a restart; the database is the truth
        # anyway); the tests keep nothing.
        save = ["--save", "60 1000", "--appendonly", "no"] if persistent else ["--save", "", "--appendonly", "no"]
        subprocess.run(
            [str(self.redis_server), "--port", str(self.redis_port), "--bind", "127.0.0.1", *save,
             "--daemonize", "yes", "--pidfile", str(self.redis_pidfile),
             "--logfile", str(self.redis_dir / "redis.log"), "--dir", str(self.redis_dir)],
            check=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, timeout=30,
        )  # fmt: skip
        self.started_redis = True
        deadline = time.monotonic() + 15
        while not self.redis_ping():
            if time.monotonic() > deadline:
                log = (self.redis_dir / "redis.log").read_text(errors="replace")[-2000:]
                raise ServiceError(f"{self.redis_server} did not answer on port {self.redis_port}:\n{log}")
            time.sleep(0.05)

    def redis_stop(self) -> None:
        """SIGTERM: a clean exit (with a last snapshot when persistence is on)."""
        try:
            pid = int(self.redis_pidfile.read_text().strip())
            os.kill(pid, signal.SIGTERM)
        except (OSError, ValueError):
            return
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)
        say(f"redis (pid {pid}) did not stop in 30 s; killing it")
        os.kill(pid, signal.SIGKILL)

    def stop_started(self, *, pg_mode: str = "fast") -> None:
        """Stop what this launcher started (never a server another launcher runs)."""
        for started, stop in ((self.started_redis, self.redis_stop), (self.started_pg, lambda: self.pg_stop(pg_mode))):
            if started:
                try:
                    stop()
                except Exception as exc:  # noqa: BLE001 - stop the other one too
                    say(f"stopping failed: {exc}")


def test_servers(work: Path) -> Servers:
    pg = pg_bindir()
    redis_server, redis_cli = redis_binaries()
    servers = Servers(
        pg_bindir=pg, pg_data=work / "pg", pg_log=work / "pg.log", ctl_log=work / "pg_ctl.log", pg_port=free_port(),
        redis_server=redis_server, redis_cli=redis_cli, redis_dir=work, redis_port=free_port(),
        database=PG_DATABASE_TEST,
    )  # fmt: skip
    if os.geteuid() == 0:
        pg_user_prepare(pg / "postgres", work.parent)
        os.chown(work, pg_uid(), -1)
    servers.pg_init()
    servers.pg_start(PG_TEST_OPTIONS, socket_dir=work)
    servers.redis_start(persistent=False)
    return servers
