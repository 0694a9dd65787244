"""Celery tasks of outbound events: ids in, services do the work (Saleor-style thin tasks)."""

from celery import shared_task
from django.core.cache import cache

from events import services

# The sweeper wakes an endpoint at most once per this many seconds; a running task keeps going on its own.
SWEEP_WAKE_DEDUP_SECONDS = 10


@shared_task(name="events.endpoint_deliver")
def endpoint_deliver_task(endpoint_id: str) -> dict[str, int]:
    """Deliver an endpoint's due events. Safe to run twice and concurrently (rows are leased)."""
    return services.endpoint_deliver_due(endpoint_id=endpoint_id)


@shared_task(name="events.sweep")
def deliveries_sweep_task() -> int:
    """Beat: re-apply Meta statuses that arrived before their wamid was stored, expire old
    deliveries, and wake a worker for every endpoint with due deliveries."""
    from whatsapp.services import unmatched_statuses_retry

    unmatched_statuses_retry()
    woken = 0
    for endpoint_id in services.deliveries_sweep():
        if cache.add(f"events:sweep-woke:{endpoint_id}", 1, SWEEP_WAKE_DEDUP_SECONDS):
            endpoint_deliver_task.delay(endpoint_id)
            woken += 1
    return woken
