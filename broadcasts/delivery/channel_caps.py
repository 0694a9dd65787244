"""A channel's ``max_mps`` as last saved (the admin, a command), for a run already going (docs/rules.md).

A run reads the cap when it starts; a change saved while it runs reaches it through its planning step, which
re-reads the channel's row at most once every REREAD_SECONDS in the same hop to the database thread (one
primary-key read per second per run, nothing per send). The run then paces with the new cap: slots on the
channel's GCRA schedule at the new rate, the one-second log's budget, the batch and claim sizes.
"""

from __future__ import annotations

import time

from django.db import connection

from templates_registry.models import Channel

# How often a running run looks at its channel's cap: a change takes effect within about this long.
REREAD_SECONDS = 1.0

_CAP_SQL = f"SELECT max_mps FROM {Channel._meta.db_table} WHERE id = %s"


class ChannelCap:
    """One run's view of its channel's cap; used only from the run's database thread (in order)."""

    def __init__(self, *, channel_id: str, max_mps: int) -> None:
        self.channel_id = channel_id
        self.max_mps = max_mps
        self.read_at = time.monotonic()

    def fresh(self) -> int:
        """The cap, re-read from the database when the last read is REREAD_SECONDS old (a channel gone: as was)."""
        now = time.monotonic()
        if now - self.read_at >= REREAD_SECONDS:
            with connection.cursor() as cursor:
                cursor.execute(_CAP_SQL, [self.channel_id])
                row = cursor.fetchone()
            self.read_at = now
            if row is not None and int(row[0]) >= 1:
                self.max_mps = int(row[0])
        return self.max_mps
