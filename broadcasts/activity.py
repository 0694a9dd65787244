"""What a broadcast did over time, for its admin page: sends sent, delivered, read and failed per time bucket; the
funnel from its kept counts; its failures grouped by code.

A broadcast has at most 5,000 sends, so its timeline is one aggregate over its own rows: the scan is led by
``broadcast_id`` on the send indexes (``send_unique_index_in_broadcast``, ``send_broadcast_status_idx``) and never
reads another broadcast's sends (tests/broadcasts/test_activity.py reads the plan).
"""

from datetime import datetime, timedelta
from typing import NamedTuple

from django.db import connection
from django.db.models import Count, Max, Q

from broadcasts.models import Send, SendStatus

SERIES = ("sent", "delivered", "read", "failed")

# The bucket follows the span from the first to the last event (the CASE below), so the chart has between a few and
# a few hundred points: per second under 3 minutes (a fast broadcast is over in one), per minute under 6 hours, then
# per hour (a broadcast held by send windows or the messaging limit), per day beyond a week (a retry up to 30 days
# later). Buckets are truncated in UTC, where a day is always 24 hours: adding the step lands on the next bucket.
STEP = {
    "second": timedelta(seconds=1),
    "minute": timedelta(minutes=1),
    "hour": timedelta(hours=1),
    "day": timedelta(days=1),
}

# One pass over the broadcast's sends: each send gives up to four (kind, time) events, kept where the time is set.
_TIMELINE_SQL = """
WITH events AS (
    SELECT e.kind, e.at
    FROM broadcasts_send s
    CROSS JOIN LATERAL (VALUES (0, s.sent_at), (1, s.delivered_at), (2, s.read_at), (3, s.failed_at)) AS e (kind, at)
    WHERE s.broadcast_id = %(broadcast_id)s AND e.at IS NOT NULL
), span AS (
    SELECT CASE
        WHEN max(at) - min(at) < interval '3 minutes' THEN 'second'
        WHEN max(at) - min(at) < interval '6 hours' THEN 'minute'
        WHEN max(at) - min(at) < interval '7 days' THEN 'hour'
        ELSE 'day' END AS unit
    FROM events
)
SELECT span.unit, date_trunc(span.unit, events.at, 'UTC') AS bucket, events.kind, count(*) AS n
FROM events CROSS JOIN span
GROUP BY span.unit, bucket, events.kind
ORDER BY bucket, events.kind
"""


class Timeline(NamedTuple):
    """Counts per bucket, gaps filled with zeros: ``buckets[i]`` starts the ``unit`` that ``counts[kind][i]``
    counts. ``unit`` is None when nothing has happened yet."""

    unit: str | None
    buckets: list[datetime]
    counts: dict[str, list[int]]

    def totals(self) -> dict[str, int]:
        return {kind: sum(values) for kind, values in self.counts.items()}

    def rows(self) -> list[tuple[datetime, dict[str, int]]]:
        """(bucket, {kind: n}) of the buckets where anything happened: the chart's numbers as a table."""
        out = []
        for i, bucket in enumerate(self.buckets):
            values = {kind: self.counts[kind][i] for kind in SERIES}
            if any(values.values()):
                out.append((bucket, values))
        return out


def timeline_fill(*, unit: str | None, rows: list[tuple[datetime, int, int]]) -> Timeline:
    """The Timeline of (bucket, kind index, n) rows ordered by bucket: one entry per ``unit`` from the first bucket
    to the last, so the chart's x axis is time, evenly spaced."""
    counts: dict[str, list[int]] = {kind: [] for kind in SERIES}
    if unit is None or not rows:
        return Timeline(unit=None, buckets=[], counts=counts)
    step = STEP[unit]
    by_bucket: dict[datetime, dict[int, int]] = {}
    for bucket, kind, n in rows:
        by_bucket.setdefault(bucket, {})[kind] = n
    first, last = rows[0][0], rows[-1][0]
    buckets = []
    at = first
    while at <= last:
        buckets.append(at)
        found = by_bucket.get(at, {})
        for index, kind in enumerate(SERIES):
            counts[kind].append(found.get(index, 0))
        at += step
    return Timeline(unit=unit, buckets=buckets, counts=counts)


def broadcast_timeline(*, broadcast_id: str) -> Timeline:
    """The broadcast's sends over time: how many were sent, delivered, read and failed in each bucket (one query)."""
    with connection.cursor() as cursor:
        cursor.execute(_TIMELINE_SQL, {"broadcast_id": broadcast_id})
        fetched = cursor.fetchall()
    unit = fetched[0][0] if fetched else None
    return timeline_fill(unit=unit, rows=[(bucket, kind, n) for _, bucket, kind, n in fetched])


class FunnelStep(NamedTuple):
    name: str
    count: int
    rate: float | None  # of the step before (None for the first step, or when the step before is 0)


def funnel(*, counts: dict[str, int], total: int) -> list[FunnelStep]:
    """attempted -> sent -> delivered -> read from the kept counts (each send counted in its latest status: a READ
    send was delivered and sent too). Rates are of the step before, 4 decimals."""
    read = counts["read"]
    delivered = counts["delivered"] + read
    sent = counts["sent"] + delivered
    attempted = sent + counts["failed"]
    steps = [("attempted", attempted), ("sent", sent), ("delivered", delivered), ("read", read)]
    out, before = [], None
    for name, count in steps:
        rate = round(count / before, 4) if before else None
        out.append(FunnelStep(name=name, count=count, rate=rate))
        before = count
    return out


class FailureGroup(NamedTuple):
    code: str
    title: str
    message: str  # one of the group's messages (Meta's wording varies with details)
    failed: int
    retryable: int  # how many a Retry of this code would re-queue


def broadcast_failures(*, broadcast_id: str, limit: int = 50) -> list[FailureGroup]:
    """The broadcast's FAILED sends grouped by error code, most frequent first (one query)."""
    rows = (
        Send.objects.filter(broadcast_id=broadcast_id, status=SendStatus.FAILED)
        .values("error_code")
        .annotate(
            failed=Count("id"),
            retryable=Count("id", filter=Q(error_retryable=True)),
            title=Max("error_title"),
            message=Max("error_message"),
        )
        .order_by("-failed", "error_code")[:limit]
    )
    return [
        FailureGroup(
            code=row["error_code"],
            title=row["title"] or "",
            message=row["message"] or "",
            failed=row["failed"],
            retryable=row["retryable"],
        )
        for row in rows
    ]
