"""A broadcast's sends as CSV (CONTRACT 5): the rows of the admin's export and of the API's ``format=csv``.

Streamed: the sends are read by keyset chunks on (broadcast, index), so memory stays flat for any broadcast size
and no server-side cursor has to outlive a transaction.
"""

import csv
from collections.abc import Iterator
from typing import Any

import orjson

from broadcasts.models import Send
from core.timefmt import iso_utc

CSV_HEADER = (
    "index",
    "to",
    "status",
    "message_id",
    "attempts",
    "error_code",
    "error_message",
    "updated_at",
    "meta_data",
)
CHUNK_SIZE = 2000


def send_csv_row(send: dict[str, Any]) -> list[Any]:
    """One CSV row from a send's values (the keys of ``CSV_HEADER``): empty strings for nulls, JSON meta_data."""
    meta_data = send.get("meta_data")
    return [
        send["index"],
        send["to"],
        send["status"],
        send.get("message_id") or "",
        send["attempts"],
        send.get("error_code") or "",
        send.get("error_message") or "",
        iso_utc(send.get("updated_at")) or "",
        orjson.dumps(meta_data).decode() if meta_data is not None else "",
    ]


def sends_for_csv(*, broadcast_id: str, status: str | None = None, chunk_size: int = CHUNK_SIZE) -> Iterator[dict]:
    """The broadcast's sends (optionally of one status) in request order, read ``chunk_size`` at a time."""
    after = -1
    while True:
        queryset = Send.objects.filter(broadcast_id=broadcast_id, index__gt=after)
        if status is not None:
            queryset = queryset.filter(status=status)
        chunk = list(queryset.order_by("index").values(*CSV_HEADER)[:chunk_size])
        yield from chunk
        if len(chunk) < chunk_size:
            return
        after = chunk[-1]["index"]


class _Echo:
    """A file-like object whose ``write`` returns the line: csv.writer then yields text instead of storing it."""

    def write(self, value: str) -> str:
        return value


def sends_csv_lines(sends: Iterator[dict[str, Any]]) -> Iterator[str]:
    """The header line, then one CSV line per send (for a StreamingHttpResponse)."""
    writer = csv.writer(_Echo())
    yield writer.writerow(CSV_HEADER)
    for send in sends:
        yield writer.writerow(send_csv_row(send))
