"""Celery tasks of outbound events: ids in, services do the work (Saleor-style thin tasks)."""

import logging

from celery import shared_task
from django.core.cache import cache

from events import services

logger = logging.getLogger(__name__)


@shared_task(name="events.endpoint_deliver")
def endpoint_deliver_task(endpoint_id: str) -> dict[str, int]:
    """Deliver an endpoint's due events. Safe to run twice and concurrently (rows are leased)."""
    # From now on a new event needs a new task: this run may already be past its last claim.
    try:
        cache.delete(services.queued_mark_key(endpoint_id))
    except Exception as exc:  # noqa: BLE001 - Redis blip: the mark expires by itself, the rows are the truth
        logger.warning("events: could not clear the queued mark of %s (%s)", endpoint_id, exc)
    stats = services.endpoint_deliver_due(endpoint_id=endpoint_id)
    if stats.get("budget_spent"):
        services._enqueue_delivery(endpoint_id)  # more is due: continue in a fresh task, after others
    return stats


@shared_task(name="events.sweep")
def deliveries_sweep_task() -> int:
    """Beat: re-apply Meta statuses that arrived before their wamid was stored, expire old
    deliveries, and wake a worker for every endpoint with due deliveries."""
    from whatsapp.services import unmatched_statuses_retry

    unmatched_statuses_retry()
    endpoint_ids = services.deliveries_sweep()
    for endpoint_id in endpoint_ids:
        services._enqueue_delivery(endpoint_id)  # skipped when a task for it is already waiting
    return len(endpoint_ids)
