"""Retention (docs/operations.md): the sends of broadcasts that ended more than RETENTION_DAYS ago are deleted by beat.

In bounded batches with no long lock: each DELETE removes at most PURGE_BATCH sends of one broadcast, by a range of
their request positions (``index`` runs 0..total_recipients-1: the unique (broadcast, index) index finds them,
whatever the statistics say; a MIN/MAX(id) by broadcast can walk the whole primary key), each in its own short
transaction; a run stops after PURGE_MAX_SECONDS and the next one goes on. The broadcast keeps its kept
counts (and so its error_rate) and gets ``purged_at``; its recipients listing is then empty. Nothing pending is
ever deleted: only ended broadcasts (COMPLETED, FAILED, CANCELLED) with no pending send are purged, and every
DELETE repeats ``status <> 'PENDING'``.
"""

import time
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from broadcasts.models import FINAL_BROADCAST_STATUSES, Broadcast, ChannelMinute, FailureHour, Send, SendStatus

# Sends per DELETE: a few milliseconds of locks on a few thousand rows.
PURGE_BATCH = 5000
# Broadcasts looked at per run, and the longest a run goes on (beat runs it again, the rest then).
PURGE_BROADCASTS = 100
PURGE_MAX_SECONDS = 30.0
# The overview charts the last hour and lists the last day's failures; a margin for an operator looking back.
ROLLUP_MINUTES_KEPT = timedelta(days=1)
ROLLUP_HOURS_KEPT = timedelta(days=7)


def retention_cutoff(*, now: datetime | None = None) -> datetime:
    return (now or timezone.now()) - timedelta(days=settings.RETENTION_DAYS)


def broadcasts_purge_due(*, now: datetime | None = None, limit: int = PURGE_BROADCASTS) -> list[str]:
    """Ended broadcasts past retention whose sends are still stored, oldest first (partial index
    broadcast_purge_due)."""
    return list(
        Broadcast.objects.filter(
            purged_at__isnull=True,
            completed_at__isnull=False,
            completed_at__lt=retention_cutoff(now=now),
            status__in=FINAL_BROADCAST_STATUSES,
            pending=0,
        )
        .order_by("completed_at")
        .values_list("id", flat=True)[:limit]
    )


def broadcast_sends_purge(
    *, broadcast_id: str, batch: int | None = None, deadline: float | None = None
) -> tuple[int, bool] | None:
    """Delete the broadcast's sends, ``batch`` ids per DELETE; then set ``purged_at``. Returns (sends deleted,
    whether it is now purged), or None when the deadline came first (the next run goes on)."""
    batch = batch or PURGE_BATCH
    total = Broadcast.objects.filter(id=broadcast_id).values_list("total_recipients", flat=True).first() or 0
    deleted = 0
    for low in range(0, total, batch):
        if deadline is not None and time.monotonic() > deadline:
            return None
        with transaction.atomic():
            n, _ = (
                Send.objects.filter(broadcast_id=broadcast_id, index__gte=low, index__lt=low + batch)
                .exclude(status=SendStatus.PENDING)
                .delete()
            )
        deleted += n
    with transaction.atomic():
        broadcast = Broadcast.objects.select_for_update().filter(id=broadcast_id).first()
        # A send still stored here is pending (a retry after the cutoff was read): the broadcast is not purged.
        purged = broadcast is not None and not Send.objects.filter(broadcast_id=broadcast_id).exists()
        if purged:
            Broadcast.objects.filter(id=broadcast_id).update(purged_at=timezone.now())
    return deleted, purged


def rollups_purge(*, now: datetime | None = None) -> int:
    """The overview's rollups past what it shows (broadcasts/rollups.py): minutes older than a day, hours older than
    a week (each DELETE by its time index)."""
    now = now or timezone.now()
    minutes, _ = ChannelMinute.objects.filter(minute__lt=now - ROLLUP_MINUTES_KEPT).delete()
    hours, _ = FailureHour.objects.filter(hour__lt=now - ROLLUP_HOURS_KEPT).delete()
    return minutes + hours


def sends_purge_expired(*, now: datetime | None = None, max_seconds: float = PURGE_MAX_SECONDS) -> dict[str, int]:
    """Beat (maintenance): purge the sends of broadcasts past retention, for at most ``max_seconds``."""
    deadline = time.monotonic() + max_seconds
    purged = sends = 0
    for broadcast_id in broadcasts_purge_due(now=now):
        done = broadcast_sends_purge(broadcast_id=broadcast_id, deadline=deadline)
        if done is None:
            break
        sends += done[0]
        purged += done[1]
    return {"broadcasts": purged, "sends": sends}
