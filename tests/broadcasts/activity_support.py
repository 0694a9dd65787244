"""A broadcast with a known mix of sends and their status times, written to PostgreSQL directly (the admin page's
chart, funnel and failures are read from it): shared by tests/broadcasts/test_activity.py and the browser tests.

Per minute (UTC, 2026-12-01):   sent  delivered  read  failed
    10:00                        10
    10:01                         5       7
    10:02                                               5
    10:03                                        4
    10:04                                               1
Kept counts: pending 2, sent 5, delivered 3, read 4, failed 6 (3 x 131049 retryable, after being sent; 2 x 131026
not retryable; 1 x 130429 retryable).
"""

from datetime import UTC, datetime, timedelta
from typing import NamedTuple

from broadcasts.counts import counts_rebuild
from broadcasts.models import Broadcast, BroadcastStatus, Send, SendStatus

T0 = datetime(2026, 12, 1, 10, 0, 0, tzinfo=UTC)


def at(seconds: int | None) -> datetime | None:
    return None if seconds is None else T0 + timedelta(seconds=seconds)


class Group(NamedTuple):
    n: int
    status: str
    sent: int | None = None  # seconds after T0
    delivered: int | None = None
    read: int | None = None
    failed: int | None = None
    code: str = ""
    retryable: bool | None = None
    message: str = ""


S = SendStatus
MIX = (
    Group(4, S.READ, sent=5, delivered=70, read=200),
    Group(3, S.DELIVERED, sent=30, delivered=100),
    Group(5, S.SENT, sent=75),
    Group(3, S.FAILED, sent=40, failed=120, code="131049", retryable=True, message="Meta chose not to deliver."),
    Group(2, S.FAILED, failed=150, code="131026", retryable=False, message="Message undeliverable."),
    Group(1, S.FAILED, failed=290, code="130429", retryable=True, message="Rate limit hit"),
    Group(2, S.PENDING),
)
MIX_PER_MINUTE = {
    "10:00": {"sent": 10, "delivered": 0, "read": 0, "failed": 0},
    "10:01": {"sent": 5, "delivered": 7, "read": 0, "failed": 0},
    "10:02": {"sent": 0, "delivered": 0, "read": 0, "failed": 5},
    "10:03": {"sent": 0, "delivered": 0, "read": 4, "failed": 0},
    "10:04": {"sent": 0, "delivered": 0, "read": 0, "failed": 1},
}
MIX_COUNTS = {"pending": 2, "sent": 5, "delivered": 3, "read": 4, "failed": 6, "cancelled": 0}


def broadcast_with_sends(
    channel, template, groups=MIX, *, name: str = "Winter sale", status: str = BroadcastStatus.COMPLETED, **fields
) -> Broadcast:
    """A broadcast whose sends are ``groups`` (in order), its kept counts rebuilt from them."""
    total = sum(group.n for group in groups)
    broadcast = Broadcast.objects.create(
        organization=channel.organization,
        channel=channel,
        template=template,
        template_name=template.name,
        language=template.language,
        campaign_name=name,
        status=status,
        total_recipients=total,
        created_at=T0 - timedelta(seconds=5),
        started_at=T0,
        **fields,
    )
    sends, index = [], 0
    for group in groups:
        for _ in range(group.n):
            sends.append(
                Send(
                    broadcast=broadcast,
                    index=index,
                    to=f"+3461{index:07d}",
                    status=group.status,
                    attempts=0 if group.status == S.PENDING else 1,
                    message_id=f"wamid.{broadcast.id}.{index}" if group.sent is not None else None,
                    sent_at=at(group.sent),
                    delivered_at=at(group.delivered),
                    read_at=at(group.read),
                    failed_at=at(group.failed),
                    error_code=group.code,
                    error_title=group.message if group.code else "",
                    error_message=group.message,
                    error_retryable=group.retryable,
                    updated_at=T0,
                )
            )
            index += 1
    Send.objects.bulk_create(sends, batch_size=2000)
    counts_rebuild(broadcast_ids=[broadcast.id])
    broadcast.refresh_from_db()
    return broadcast
