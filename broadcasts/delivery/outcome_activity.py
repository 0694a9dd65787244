"""A batch of outcomes (delivery/outcomes.py's rows) added to the overview's rollups (broadcasts/rollups.py): the
POSTs it made, at their answers' instants, and its failures."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from broadcasts.models import SendStatus
from broadcasts.rollups import activity_add


class _Row(Protocol):
    id: int
    status: str
    attempts_delta: int
    posted: bool
    error_code: str | None
    sent_at: datetime | None
    failed_at: datetime | None


def row_posted(row: _Row) -> bool:
    """Whether the row records the answer to a POST (what the channel's cap counts): not a send handed back unposted
    (``posted`` False) nor one failed before any POST (its claim's attempt given back: ``attempts_delta`` -1)."""
    if row.status == SendStatus.SENT:
        return True
    if row.status == SendStatus.FAILED:
        return row.posted and row.attempts_delta >= 0
    return row.status == SendStatus.PENDING and row.posted and bool(row.error_code)


def outcomes_activity_add(*, rows: list[_Row], written: list, channel_id: str, now: datetime) -> None:
    """``written``: (id, status, broadcast id, to) of the rows the outcome UPDATE wrote; only those count. One
    statement, last in the outcome write's transaction; none when the batch posted and failed nothing."""
    if not written:
        return
    broadcast_of = {send_id: broadcast_id for send_id, _, broadcast_id, _ in written}
    kept = [r for r in rows if r.id in broadcast_of]
    activity_add(
        now=now,
        posted=[r.sent_at or r.failed_at or now for r in kept if row_posted(r)],
        channel_id=channel_id,
        broadcast_id=written[0][2],
        failures=[(broadcast_of[r.id], r.error_code or "") for r in kept if r.status == SendStatus.FAILED],
    )
