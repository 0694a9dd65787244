"""ObjectId-style identifiers: 24 lowercase hex characters, time-ordered."""

import os
import time


def object_id() -> str:
    """4 bytes of Unix time then 8 random bytes, like a MongoDB ObjectId (sortable by creation)."""
    return f"{int(time.time()):08x}{os.urandom(8).hex()}"
