"""Celery tasks of outbound events: ids in, the outbox does the work (Saleor-style thin tasks).

Nothing imports this module: ``events/queue.py`` enqueues ``events.endpoint_deliver`` by name, and beat
runs ``events.sweep`` (config/settings.py).
"""

import logging

from celery import shared_task
from django.core.cache import cache

from events import lanes, outbox, queue

logger = logging.getLogger(__name__)


@shared_task(name=queue.ENDPOINT_DELIVER_TASK)
def endpoint_deliver_task(endpoint_id: str) -> dict[str, int]:
    """Deliver an endpoint's due events. Safe to run twice and concurrently (rows are leased)."""
    # From now on a new event needs a new task: this run may already be past its last claim.
    try:
        cache.delete(queue.queued_mark_key(endpoint_id))
    except Exception as exc:  # noqa: BLE001 - Redis blip: the mark expires by itself, the rows are the truth
        logger.warning("events: could not clear the queued mark of %s (%s)", endpoint_id, exc)
    # In the endpoint's lane (its organization's, or the failing endpoints'): waits for a slot without holding a worker.
    return lanes.endpoint_deliver_in_lane(endpoint_id=endpoint_id)


@shared_task(name=queue.SWEEP_TASK)
def deliveries_sweep_task() -> int:
    """Beat: expire old deliveries and wake a worker for every endpoint with due deliveries.
    (Meta statuses that beat their wamid are re-applied by ``broadcasts.unmatched_statuses_retry``.)"""
    endpoint_ids = outbox.deliveries_sweep()
    for endpoint_id in endpoint_ids:
        queue.delivery_enqueue(endpoint_id)  # skipped when a task for it is already waiting
    return len(endpoint_ids)
