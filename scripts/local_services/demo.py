"""The demo's servers and settings, kept in var/ between runs.

PostgreSQL's data lives in var/pg (its server log inside it), Redis's snapshot in var/redis; var/services.json
remembers the ports, binaries and the web / sandbox ports of the last run, and var/demo.env holds the demo's
environment for `source var/demo.env`. A pair already running (a `make run` beside a `make manage`) is reused, not
started again; a data folder is served by the PostgreSQL major that made it; a snapshot of another server kind
(Redis vs Valkey) is set aside rather than failing the start.
"""

from __future__ import annotations

import json
import os
import shlex
from pathlib import Path

from .binaries import pg_bindir, pg_version, redis_binaries
from .common import say
from .pg_user import pg_user_prepare
from .ports import port_choose
from .servers import Servers

ROOT = Path(__file__).resolve().parent.parent.parent
VAR = ROOT / "var"
STATE_FILE = VAR / "services.json"
DEMO_ENV_FILE = VAR / "demo.env"
PG_DATABASE_DEMO = "msgsvc"
PG_DEMO_OPTIONS = ["max_connections=200"]

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
            say(f"initialising PostgreSQL {pg_version(pg)} in var/pg ({pg})")
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
