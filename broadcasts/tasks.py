"""Celery tasks of the delivery engine: thin wrappers that take ids (JSON) and call services and the engine.

Nothing imports this module: work is enqueued by task name through broadcasts/queue.py (the bulk API's
``enqueue_dispatch`` after commit when a broadcast is created for now, and when one is resumed). Every task is
safe to run twice: the database claim decides who does the work.
"""

import logging

from celery import shared_task

from broadcasts import queue, retention
from broadcasts.delivery import dispatch, pump, recovery
from broadcasts.queue import chunk_time_limits
from broadcasts.rules import limit_wakes

logger = logging.getLogger(__name__)


@shared_task(name=queue.DISPATCH)
def broadcast_dispatch_task(broadcast_id: str, wake_at: float | None = None) -> None:
    """Start (or continue) sending a broadcast. Safe to run twice."""
    dispatch.broadcast_dispatch(broadcast_id=broadcast_id, wake_at=wake_at)


# The hard limit stays below the sends' lease, so a chunk is dead before the sweeper may take its sends back;
# the soft limit leaves time to record outcomes (a chunk stops posting after a third of the lease anyway).
@shared_task(
    name=queue.SEND_CHUNK,
    bind=True,
    soft_time_limit=chunk_time_limits()[0],
    time_limit=chunk_time_limits()[1],
)
def send_chunk_task(self, broadcast_id: str, first_id: int, last_id: int) -> None:
    """Claim and post the due sends of one id range of a broadcast."""
    reports = pump.send_chunk_deliver(broadcast_id=broadcast_id, first_id=first_id, last_id=last_id)
    for report in reports:
        if report.claimed:
            logger.info(
                "chunk %s: claimed %d posted %d sent %d failed %d retried %d deferred %d released %d late %d stop %s",
                report.broadcast_id,
                report.claimed,
                report.posted,
                report.sent,
                report.failed,
                report.retried,
                report.deferred,
                report.released,
                report.late,
                report.stop,
            )
    if reports[0].channel_busy:
        # The channel already has its share of chunk tasks running: back to the queue, a little later.
        queue.chunk_requeue_channel_busy(broadcast_id, first_id, last_id)


@shared_task(name=queue.START_DUE)
def broadcasts_start_due_task() -> None:
    """Beat, every ~5 s: start scheduled broadcasts that are due (and unscheduled ones whose enqueue was lost)."""
    recovery.broadcasts_start_due()


@shared_task(name=queue.SWEEP)
def broadcasts_sweep_task() -> None:
    """Beat, every ~10 s: find sends that should be moving and are not, and move them on."""
    recovery.broadcasts_sweep()


@shared_task(name=queue.IDEMPOTENCY_PURGE)
def idempotency_purge_task() -> int:
    """Beat, hourly: delete Idempotency-Key records older than 24 h."""
    from broadcasts.idempotency import idempotency_records_purge

    return idempotency_records_purge()


@shared_task(name=queue.RETENTION_PURGE)
def retention_purge_task() -> dict[str, int]:
    """Beat, every 10 min: delete the sends of broadcasts that ended more than RETENTION_DAYS ago (bounded), and the
    overview's rollups past what it shows."""
    retention.rollups_purge()
    return retention.sends_purge_expired()


# --- Meta statuses that arrived before their wamid was stored (broadcasts.status_updates) ---------------------


@shared_task(name=queue.LIMIT_WAITERS_WAKE)
def limit_waiters_wake_task(organization_id: int) -> None:
    limit_wakes.limit_waiters_wake(organization_id=organization_id)


@shared_task(name=queue.UNMATCHED_STATUSES_RETRY)
def unmatched_statuses_retry_task() -> int:
    """Beat, every ~10 s: re-apply Meta statuses that arrived before their wamid was stored; drop old ones."""
    from broadcasts.status_updates.unmatched import unmatched_statuses_retry

    return unmatched_statuses_retry()
