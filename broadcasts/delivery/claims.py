"""Claims: which sends a worker takes, under which lease, and the posting gate a POST must pass.

- ``sends_claim`` takes a range's due, unleased PENDING sends with ONE conditional UPDATE (lease + attempt):
  a chunk task that runs twice claims nothing the second time.
- ``sends_mark_posting`` is the gate of cancel and pause: a send is marked posting only while its broadcast is
  IN_PROGRESS, and its POST may leave only within POST_PERMIT_SECONDS of that mark (see lifecycle.FENCE_SECONDS).
- ``channel_claim_next`` finds the channel's next running broadcast with due sends, for the pump to go on with;
  ``channels_wanting_pump`` and ``channel_due_work`` tell a pump host which other channels have work (fairness).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from django.conf import settings
from django.db import connection
from django.db.models import Case, Exists, Max, Min, OuterRef, Q, Value, When
from django.utils import timezone

from broadcasts import lifecycle
from broadcasts.models import Broadcast, BroadcastStatus, Send, SendStatus

# A POST may leave only this long after the UPDATE that marked its send posting was sent (this process's clock);
# lifecycle.FENCE_SECONDS, the wait of cancel and pause after their commit, outlasts it.
POST_PERMIT_SECONDS = 0.3


def claim_size(*, max_mps: int) -> int:
    """Sends one claim takes (and a chunk task's share when a broadcast is fanned out): ~DELIVERY_CHUNK_SECONDS of
    work while the channel's chunk tasks share its cap, between 10 and DELIVERY_CHUNK_MAX."""
    share = max_mps * settings.DELIVERY_CHUNK_SECONDS / max(1, settings.DELIVERY_CHANNEL_PARALLELISM)
    return max(10, min(settings.DELIVERY_CHUNK_MAX, round(share)))


def lease_seconds() -> float:
    return settings.DELIVERY_LEASE_SECONDS


def _json(value: str | bytes | None) -> Any:
    return orjson.loads(value) if value is not None else None


@dataclass(slots=True)
class Claimed:
    """A send this worker holds (leased, its attempt counted), with what its POST needs."""

    id: int
    index: int
    to: str
    variables: dict
    attempts: int
    header_media: dict | None = None  # the send's own media header (None: the broadcast's), docs/api.md
    buttons: dict | None = None  # button parameters by index
    time_zone: str = ""  # the recipient's zone for its broadcast's send window (blank: no window)


def sends_due(*, broadcast_id: str, now: datetime):
    """The broadcast's PENDING sends due now that nobody holds."""
    return Send.objects.filter(broadcast_id=broadcast_id, status=SendStatus.PENDING).filter(
        Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now),
        # An expired lease is the sweeper's to take back first: it decides whether an unknown outcome is counted.
        lease_expires_at__isnull=True,
    )


def sends_claim(*, broadcast_id: str, first_id: int, last_id: int, now: datetime, limit: int) -> list[Claimed]:
    """Take up to `limit` of the range's due sends for this worker: lease + attempt, in ONE conditional
    UPDATE ... RETURNING (SKIP LOCKED: concurrent claimers take disjoint sends, never wait for each other).

    The lease's expiry is on the database's clock (statement_timestamp() + lease), never this
    machine's, so a worker whose clock is off neither loses its sends early nor holds them late once the sweeper
    compares it with the database's clock as well (recovery.sends_recover_expired: Now()).
    """
    sql = """
        UPDATE broadcasts_send
        SET lease_expires_at = statement_timestamp() + %s * interval '1 second', attempts = attempts + 1,
            posting_at = NULL, updated_at = %s
        WHERE id IN (
            SELECT s.id FROM broadcasts_send s
            WHERE s.broadcast_id = %s AND s.id BETWEEN %s AND %s AND s.status = 'PENDING'
              AND (s.next_attempt_at IS NULL OR s.next_attempt_at <= %s)
              AND s.lease_expires_at IS NULL
              AND EXISTS (SELECT 1 FROM broadcasts_broadcast b WHERE b.id = s.broadcast_id AND b.status = 'IN_PROGRESS')
            ORDER BY s.id LIMIT %s FOR UPDATE SKIP LOCKED
        )
        RETURNING id, "index", "to", variables, attempts, header_media, buttons, time_zone
    """
    with connection.cursor() as cursor:
        cursor.execute(sql, [lease_seconds(), now, broadcast_id, first_id, last_id, now, limit])
        rows = cursor.fetchall()
    claimed = []
    for send_id, index, to, variables, attempts, header_media, buttons, time_zone in rows:
        # Django's connections load jsonb as text (JSONField decodes it); a raw cursor decodes it here.
        send = Claimed(
            id=send_id,
            index=index,
            to=to,
            variables=_json(variables) or {},
            attempts=attempts,
            header_media=_json(header_media),
            buttons=_json(buttons),
            time_zone=time_zone,
        )
        claimed.append(send)
    claimed.sort(key=lambda c: c.id)
    return claimed


def sends_mark_posting(*, broadcast_id: str, ids: list[int]) -> tuple[float, set[int], str | None]:
    """The gate: mark these sends posting (Send.posting_at) only while the broadcast is IN_PROGRESS.

    Returns (when the UPDATE was sent, on this process's monotonic clock; the ids marked; the broadcast's
    status when the gate is closed, else None). POSTs for the marked sends may leave until the first value plus
    POST_PERMIT_SECONDS, never later (see lifecycle.FENCE_SECONDS).
    """
    sent_at = time.monotonic()
    if not ids:
        return sent_at, set(), None
    # One array: a fixed statement psycopg parses once.
    sql = """
        UPDATE broadcasts_send SET posting_at = %s
        WHERE id = ANY(%s::bigint[]) AND status = 'PENDING'
          AND EXISTS (SELECT 1 FROM broadcasts_broadcast b WHERE b.id = %s AND b.status = 'IN_PROGRESS')
        RETURNING id
    """
    with connection.cursor() as cursor:
        cursor.execute(sql, [timezone.now(), list(ids), broadcast_id])
        marked = {row[0] for row in cursor.fetchall()}
    closed = None
    if not marked:
        status = Broadcast.objects.filter(id=broadcast_id).values_list("status", flat=True).first()
        if status != BroadcastStatus.IN_PROGRESS:
            closed = status or BroadcastStatus.CANCELLED
    return sent_at, marked, closed


def channel_claim_next(*, channel_id: str) -> tuple[Broadcast, list[Claimed], int, int] | None:
    """The first batch of the channel's longest-running broadcast that has due, unclaimed sends, AUTHENTICATION and
    UTILITY ones before MARKETING ones (category lanes, docs/rules.md) (DB thread)."""
    now = timezone.now()
    marketing_last = Case(When(template__category="MARKETING", then=Value(1)), default=Value(0))
    # Only broadcasts with due sends: those a pump already served stay IN_PROGRESS until it wraps up (it finishes
    # them then), and a pump that went through twenty one-recipient broadcasts must still find the next one.
    due = Exists(
        Send.objects.filter(
            broadcast_id=OuterRef("id"), status=SendStatus.PENDING, lease_expires_at__isnull=True
        ).filter(Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now))
    )
    running = (
        Broadcast.objects.select_related("channel", "template")
        .filter(due, channel_id=channel_id, status=BroadcastStatus.IN_PROGRESS)
        .order_by(marketing_last, "started_at", "id")[:20]
    )
    for broadcast in running:
        bounds = sends_due(broadcast_id=broadcast.id, now=now).aggregate(first=Min("id"), last=Max("id"))
        if bounds["first"] is None:
            continue
        sends = sends_claim(
            broadcast_id=broadcast.id,
            first_id=bounds["first"],
            last_id=bounds["last"],
            now=now,
            limit=claim_size(max_mps=broadcast.channel.max_mps),
        )
        if sends:
            return broadcast, sends, bounds["first"], bounds["last"]
    return None


def channels_wanting_pump(*, exclude: list[str], limit: int = 50) -> list[tuple[str, int, str]]:
    """Channels (id, max_mps, id of its newest such broadcast) that may want a pump, oldest broadcast first: those
    of running broadcasts and of due PENDING ones (their dispatch may still wait for a free worker process).
    Broadcasts only, by status (index): O(running broadcasts) whatever the sends table holds; whether a channel has
    a pump (Redis) and due work (channel_due_work) the host asks next, for the channels it may take on. The newest
    broadcast tells the host that a channel it looked at has new work since."""
    now = timezone.now()
    rows = (
        Broadcast.objects.filter(
            Q(status=BroadcastStatus.IN_PROGRESS)
            | Q(status=BroadcastStatus.PENDING) & (Q(scheduled_at__isnull=True) | Q(scheduled_at__lte=now))
        )
        .exclude(channel_id__in=exclude)
        .order_by("created_at", "id")
        .values_list("channel_id", "channel__max_mps", "id")[:limit]
    )
    channels: dict[str, tuple[str, int, str]] = {}
    for channel_id, max_mps, broadcast_id in rows:
        # First seen keeps the channel's place in the order; the last row of a channel is its newest broadcast.
        channels[channel_id] = (channel_id, max_mps, broadcast_id)
    return list(channels.values())


def channel_due_work(*, channel_id: str, at_most: int) -> int:
    """Due, unleased sends of the channel's running or due broadcasts, counted up to ``at_most + 1`` (bounded)."""
    now = timezone.now()
    broadcasts = Broadcast.objects.filter(
        Q(status=BroadcastStatus.IN_PROGRESS)
        | Q(status=BroadcastStatus.PENDING) & (Q(scheduled_at__isnull=True) | Q(scheduled_at__lte=now)),
        channel_id=channel_id,
    ).values("id")
    return (
        Send.objects.filter(broadcast_id__in=broadcasts, status=SendStatus.PENDING, lease_expires_at__isnull=True)
        .filter(Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now))
        .values("id")[: at_most + 1]
        .count()
    )


def channel_start_next(*, channel_id: str) -> tuple[Broadcast, list[Claimed], int, int] | None:
    """Start the channel's due PENDING broadcasts (their dispatch may wait for a process; starting is exactly
    once whoever does it), then claim the first batch of its longest-running one with due sends (DB thread)."""
    now = timezone.now()
    due = list(
        Broadcast.objects.filter(channel_id=channel_id, status=BroadcastStatus.PENDING)
        .filter(Q(scheduled_at__isnull=True) | Q(scheduled_at__lte=now))
        .values_list("id", flat=True)[:20]
    )
    if due:
        lifecycle.broadcasts_start(broadcast_ids=due, now=now)
    return channel_claim_next(channel_id=channel_id)


def channel_small_next(*, channel_id: str, at_most: int) -> tuple[Broadcast, list[Claimed], int, int] | None:
    """``channel_start_next`` when the channel's due work is small (1 to ``at_most`` sends), else None (DB thread)."""
    if not 0 < channel_due_work(channel_id=channel_id, at_most=at_most) <= at_most:
        return None
    return channel_start_next(channel_id=channel_id)
