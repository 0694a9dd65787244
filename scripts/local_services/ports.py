"""Loopback ports for the servers.

The tests take any free port. The demo takes DEMO_PG_PORT / DEMO_REDIS_PORT when set (0: any free port; a taken
one is an error), else the port of its last run, else the usual 5432 and 6379, each only when free, else any free
port. A port counts as free when we can bind it and nothing answers on it.
"""

from __future__ import annotations

import os
import socket

from .common import ServiceError

PREFERRED_PORTS = {"pg": 5432, "redis": 6379}


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
