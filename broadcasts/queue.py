"""Enqueue the broadcasts' Celery work by task name: the one place that knows the names and their options.

A leaf (Celery and settings only): services, the sweeper and the engine call it, and nothing imports
broadcasts/tasks.py, which sits on top and only calls down. Every message is only a wake-up: the database is
the truth, and the beat sweeper finds from the rows any work a lost message left behind.
"""

import logging
import random

from celery import current_app
from django.conf import settings

logger = logging.getLogger(__name__)

DISPATCH = "broadcasts.dispatch"
SEND_CHUNK = "broadcasts.send_chunk"
START_DUE = "broadcasts.start_due"
SWEEP = "broadcasts.sweep"
IDEMPOTENCY_PURGE = "broadcasts.idempotency_purge"
UNMATCHED_STATUSES_RETRY = "broadcasts.unmatched_statuses_retry"
RETENTION_PURGE = "broadcasts.retention_purge"
LIMIT_WAITERS_WAKE = "broadcasts.limit_waiters_wake"

# The Celery queue of each task (config/celery.py's task_route reads this; settings declares the queues): the engine
# on `delivery`, beat's passes on `maintenance`, so busy pumps never hold up the sweeper.
DELIVERY_QUEUE = "delivery"
MAINTENANCE_QUEUE = "maintenance"
ROUTES = {
    DISPATCH: DELIVERY_QUEUE,
    SEND_CHUNK: DELIVERY_QUEUE,
    START_DUE: MAINTENANCE_QUEUE,
    SWEEP: MAINTENANCE_QUEUE,
    IDEMPOTENCY_PURGE: MAINTENANCE_QUEUE,
    UNMATCHED_STATUSES_RETRY: MAINTENANCE_QUEUE,
    RETENTION_PURGE: MAINTENANCE_QUEUE,
    LIMIT_WAITERS_WAKE: MAINTENANCE_QUEUE,
}

# A chunk task that finds its channel already served by DELIVERY_CHANNEL_PARALLELISM chunk tasks comes back
# after this (jittered x1-2).
CHANNEL_BUSY_RETRY_SECONDS = 1.0


def chunk_time_limits() -> tuple[int, int]:
    """(soft, hard) time limits of a chunk task: the hard one stays below the sends' lease, so a chunk task is dead
    before the sweeper may take its sends back; the soft one leaves time to record outcomes."""
    lease = int(settings.DELIVERY_LEASE_SECONDS)
    return max(5, lease - 10), max(6, lease - 5)


def _send(name: str, *, args: list, kwargs: dict | None = None, **options) -> None:
    # What Task.apply_async adds for these tasks (results are never kept).
    current_app.send_task(name, args=args, kwargs=kwargs, ignore_result=True, **options)


def _send_chunk(*, args: list, **options) -> None:
    soft, hard = chunk_time_limits()
    _send(SEND_CHUNK, args=args, soft_time_limit=soft, time_limit=hard, **options)


def enqueue_dispatch(broadcast_id: str) -> None:
    """Wake the workers for a broadcast. Call it from ``transaction.on_commit`` only.

    The broadcast is already committed: a broker that is down must not turn its 202 into an error. The message
    is only a wake-up; beat's start-due pass and the sweeper find the broadcast from its row (within ~15 s).
    """
    try:
        _send(DISPATCH, args=[broadcast_id], retry=False)
    except Exception as exc:  # noqa: BLE001 - any broker/transport error: the rows are the truth
        logger.warning(
            "dispatch of %s not queued (broker unavailable: %s); the sweeper will start it", broadcast_id, exc
        )


def dispatch_now(broadcast_id: str) -> None:
    """Dispatch a running broadcast again at once (a pump may be waiting with a countdown)."""
    _send(DISPATCH, args=[broadcast_id])


def dispatch_at(broadcast_id: str, *, wake_at: float, countdown: float) -> None:
    """Dispatch the broadcast again in ``countdown`` seconds; ``wake_at`` (epoch seconds) names this wake."""
    _send(DISPATCH, args=[broadcast_id], kwargs={"wake_at": wake_at}, countdown=countdown)


def chunk_enqueue(broadcast_id: str, first_id: int, last_id: int) -> None:
    """One chunk task over the broadcast's sends with ids first_id..last_id."""
    _send_chunk(args=[broadcast_id, first_id, last_id])


def chunk_requeue_channel_busy(broadcast_id: str, first_id: int, last_id: int) -> None:
    """The chunk task's channel already has its share of chunk tasks running: back to the queue (behind other
    channels' work), with a jittered short countdown so waiting chunk tasks do not spin."""
    _send_chunk(
        args=[broadcast_id, first_id, last_id],
        countdown=CHANNEL_BUSY_RETRY_SECONDS * random.uniform(1.0, 2.0),
    )


def limit_waiters_wake_later(organization_id: int, *, countdown: float) -> None:
    """Wake the organization's sends waiting for the messaging limit again in ``countdown`` seconds (a batch admitted
    under the old limit may park its sends just after the first wake: rules/limit_wakes.py). A lost message only
    leaves those sends to their own wait."""
    try:
        _send(LIMIT_WAITERS_WAKE, args=[organization_id], countdown=countdown, retry=False)
    except Exception as exc:  # noqa: BLE001 - any broker/transport error: the first wake already ran
        logger.warning("second limit wake of organization %s not queued (%s)", organization_id, exc)
