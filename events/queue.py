"""Wakes a worker for an endpoint's due deliveries, by task name (nothing imports ``events/tasks.py``).

The committed delivery rows are the outbox; a task is only a wake-up. A queued mark in the cache keeps the
publisher's many chunks from flooding the broker with tasks for one endpoint, and the beat sweeper
(``events.sweep``) finds anything a lost message or a broker outage left behind.
"""

import logging

from celery import current_app
from django.core.cache import cache

logger = logging.getLogger(__name__)

# The task of events/tasks.py, by its registered name.
ENDPOINT_DELIVER_TASK = "events.endpoint_deliver"
SWEEP_TASK = "events.sweep"
# The Celery queue of each task (config/celery.py's task_route reads this): deliveries on their own `events` queue,
# so a slow customer endpoint never holds up the engine; beat's sweep on `maintenance`.
EVENTS_QUEUE = "events"
MAINTENANCE_QUEUE = "maintenance"
ROUTES = {ENDPOINT_DELIVER_TASK: EVENTS_QUEUE, SWEEP_TASK: MAINTENANCE_QUEUE}
# A queued task's mark outlives a lost broker message by this much at most; the sweeper covers the rest.
QUEUED_MARK_SECONDS = 30


def queued_mark_key(endpoint_id: str) -> str:
    return f"events:queued:{endpoint_id}"


def delivery_task_send(endpoint_id: str) -> None:
    """Publishes one ``events.endpoint_deliver`` task (to the ``events`` queue: ROUTES)."""
    current_app.send_task(ENDPOINT_DELIVER_TASK, args=[endpoint_id])


def delivery_enqueue(endpoint_id: str) -> None:
    """Queues a delivery task for the endpoint unless one is already queued and not started yet:
    that one will see these rows (they are committed before this runs), so the publisher's
    many chunks do not flood the broker. The task clears the mark when it starts.

    Never raises: the committed delivery rows are the outbox, and the broker only wakes a worker. With Redis
    (cache or broker) down, the rows stay pending and the beat sweeper (events.sweep) queues them later."""
    key = queued_mark_key(endpoint_id)
    marked = False
    try:
        marked = cache.add(key, 1, QUEUED_MARK_SECONDS)
        if marked:
            delivery_task_send(endpoint_id)
    except Exception as exc:  # noqa: BLE001
        logger.warning("events: could not queue delivery of endpoint %s, the sweeper will (%s)", endpoint_id, exc)
        if marked:
            try:
                cache.delete(key)  # so the sweeper's next wake-up is not skipped for the mark's lifetime
            except Exception:  # noqa: BLE001, S110
                pass
