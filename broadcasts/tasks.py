"""Celery tasks of the delivery engine: thin wrappers that take ids (JSON) and call services.

The bulk API enqueues ``broadcast_dispatch_task`` after commit when a broadcast is created for now, and when one
is resumed. Every task is safe to run twice: the database claim decides who does the work.
"""

import logging
import random

from celery import shared_task

from broadcasts.delivery import chunk_time_limits

logger = logging.getLogger(__name__)


@shared_task(name="broadcasts.dispatch")
def broadcast_dispatch_task(broadcast_id: str, wake_at: float | None = None) -> None:
    """Start (or continue) sending a broadcast. Safe to run twice."""
    from broadcasts import delivery

    delivery.broadcast_dispatch(broadcast_id=broadcast_id, wake_at=wake_at)


def enqueue_dispatch(broadcast_id: str) -> None:
    """Wake the workers for a broadcast. Call it from ``transaction.on_commit`` only.

    The broadcast is already committed: a broker that is down must not turn its 202 into an error. The message
    is only a wake-up; beat's start-due pass and the sweeper find the broadcast from its row (within ~15 s).
    """
    try:
        broadcast_dispatch_task.apply_async(args=[broadcast_id], retry=False)
    except Exception as exc:  # noqa: BLE001 - any broker/transport error: the rows are the truth
        logger.warning(
            "dispatch of %s not queued (broker unavailable: %s); the sweeper will start it", broadcast_id, exc
        )


# The hard limit stays below the sends' lease, so a chunk is dead before the sweeper may take its sends back;
# the soft limit leaves time to record outcomes (a chunk stops posting after a third of the lease anyway).
@shared_task(
    name="broadcasts.send_chunk",
    bind=True,
    soft_time_limit=chunk_time_limits()[0],
    time_limit=chunk_time_limits()[1],
)
def send_chunk_task(self, broadcast_id: str, first_id: int, last_id: int) -> None:
    """Claim and post the due sends of one id range of a broadcast."""
    from broadcasts import delivery

    reports = delivery.send_chunk_deliver(broadcast_id=broadcast_id, first_id=first_id, last_id=last_id)
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
        # The channel already has its share of chunks running: back to the queue (behind other channels' work),
        # with a jittered short countdown so waiting chunks do not spin.
        self.apply_async(
            args=[broadcast_id, first_id, last_id],
            countdown=delivery.CHANNEL_BUSY_RETRY_SECONDS * random.uniform(1.0, 2.0),
        )


@shared_task(name="broadcasts.start_due")
def broadcasts_start_due_task() -> None:
    """Beat, every ~5 s: start scheduled broadcasts that are due (and unscheduled ones whose enqueue was lost)."""
    from broadcasts import recovery

    recovery.broadcasts_start_due()


@shared_task(name="broadcasts.sweep")
def broadcasts_sweep_task() -> None:
    """Beat, every ~10 s: find sends that should be moving and are not, and move them on."""
    from broadcasts import recovery

    recovery.broadcasts_sweep()


@shared_task(name="broadcasts.idempotency_purge")
def idempotency_purge_task() -> int:
    """Beat, hourly: delete Idempotency-Key records older than 24 h."""
    from broadcasts.idempotency import idempotency_records_purge

    return idempotency_records_purge()


# --- Meta statuses that arrived before their wamid was stored (broadcasts.status_updates) ---------------------


@shared_task(name="broadcasts.unmatched_statuses_retry")
def unmatched_statuses_retry_task() -> int:
    """Beat, every ~10 s: re-apply Meta statuses that arrived before their wamid was stored; drop old ones."""
    from broadcasts.status_updates import unmatched_statuses_retry

    return unmatched_statuses_retry()
