"""A broadcast's sends as CSV (docs/api.md): the rows of the admin's export and of the API's ``format=csv``.

Streamed: the sends are read by keyset chunks on (broadcast, index) (or (broadcast, status, index) with a status
filter: the send_broadcast_status_idx index either way), so memory stays flat for any broadcast size and no
server-side cursor has to outlive a transaction.

Formula injection (OWASP "CSV injection"): a spreadsheet runs a cell that starts with ``=``, ``+``, ``-``, ``@``,
tab or CR as a formula. Every text cell that may carry words from outside (wamid, error code and message, which
come from Meta's answers and webhooks) starting so gets a leading ``'``, which spreadsheets show as text. Two
columns are left exact on purpose: ``to`` is a validated E.164 number (``+`` then digits only: never a formula
that can call anything, and a quote would corrupt every row of a machine's import), and ``meta_data`` is always a
JSON object, so its cell starts with ``{``. Numbers and times are ours.
"""

import csv
from collections.abc import Iterator
from typing import Any

import orjson

from broadcasts.models import Broadcast, Send
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
# First characters a spreadsheet reads as the start of a formula (OWASP).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_text_cell(value: str | None) -> str:
    """A text cell, defused: a leading ``'`` when a spreadsheet would read it as a formula; "" for null."""
    if not value:
        return ""
    return "'" + value if value.startswith(FORMULA_STARTS) else value


def send_csv_row(send: dict[str, Any]) -> list[Any]:
    """One CSV row from a send's values (the keys of ``CSV_HEADER``): empty strings for nulls, JSON meta_data."""
    meta_data = send.get("meta_data")
    return [
        send["index"],
        send["to"],
        send["status"],
        csv_text_cell(send.get("message_id")),
        send["attempts"],
        csv_text_cell(send.get("error_code")),
        csv_text_cell(send.get("error_message")),
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


def broadcast_csv_stream(*, broadcast: Broadcast, status: str | None = None) -> Iterator[str]:
    """The API's ``format=csv`` body: the header, then the sends in request order, one text piece per chunk of
    sends (a few writes to the socket, not one per row). A purged broadcast's export is the header alone."""
    writer = csv.writer(_Echo())
    yield writer.writerow(CSV_HEADER)
    if broadcast.purged_at is not None:
        return
    rows: list[str] = []
    for send in sends_for_csv(broadcast_id=broadcast.id, status=status, chunk_size=CHUNK_SIZE):
        rows.append(writer.writerow(send_csv_row(send)))
        if len(rows) >= CHUNK_SIZE:
            yield "".join(rows)
            rows = []
    if rows:
        yield "".join(rows)
