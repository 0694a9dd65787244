"""An append-only file of every POST the sandbox received, for runs that kill the sandbox itself.

With SANDBOX_JOURNAL=<path> (read by `python -m sandbox`), each POST to `/messages` or `/marketing_messages` is one
JSON line `[received_at, phone_number_id, to, outcome, path, template name, biz_opaque_callback_data, run id]`,
written with one `write(2)` on an O_APPEND descriptor as it arrives: a `kill -9` loses none of the lines written, and
a restarted sandbox appends to the same file. The in-memory arrival log (`/_sandbox/requests`) dies with the
process; this file is what `benchmarks/chaos` reads to count what Meta received across sandbox restarts.
"""

from __future__ import annotations

import os
from typing import Any

import orjson


class Journal:
    def __init__(self, path: str, run_id: str):
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self.run_id = run_id

    def record(self, *, received_at: float, phone_number_id: str, to: str, outcome: str, path: str, body: Any) -> None:
        template = body.get("template") if isinstance(body, dict) else None
        name = template.get("name") if isinstance(template, dict) else None
        callback = body.get("biz_opaque_callback_data") if isinstance(body, dict) else None
        line = [received_at, phone_number_id, to, outcome, path, name, callback, self.run_id]
        os.write(self.fd, orjson.dumps(line) + b"\n")


def journal_from_env(run_id: str) -> Journal | None:
    path = os.environ.get("SANDBOX_JOURNAL", "").strip()
    return Journal(path, run_id) if path else None
