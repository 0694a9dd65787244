"""What every part of the launcher shares: the error that ends a run with a message, and how it speaks.

A `ServiceError` is a server that cannot be found or started; scripts/services.py prints its message (which says
what to do) and exits 1 rather than showing a traceback. `say` prints progress to stderr with a `services:` prefix,
which tests and logs look for (e.g. "services: PostgreSQL and Redis stopped").
"""

from __future__ import annotations

import sys


class ServiceError(RuntimeError):
    """A server that cannot be found or started; the message says what to do."""


def say(message: str) -> None:
    print(f"services: {message}", file=sys.stderr, flush=True)
