"""ObjectId-style identifiers: 24 lowercase hex characters, time-ordered."""

import os
import re
import time

OBJECT_ID_PATTERN = "[0-9a-f]{24}"
_OBJECT_ID = re.compile(OBJECT_ID_PATTERN)


def object_id() -> str:
    """4 bytes of Unix time then 8 random bytes, like a MongoDB ObjectId (sortable by creation)."""
    return f"{int(time.time()):08x}{os.urandom(8).hex()}"


def is_object_id(value: object) -> bool:
    """Whether ``value`` has the shape of an ``object_id`` (checked before any query uses it)."""
    return isinstance(value, str) and _OBJECT_ID.fullmatch(value) is not None
