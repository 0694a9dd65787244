"""Celery tasks of the delivery engine: thin wrappers that load ids and call services.

Owned by the delivery engine (issue 4). The bulk API enqueues ``broadcast_dispatch_task`` after
commit when a broadcast is created for now, and when one is resumed.
"""

from celery import shared_task


@shared_task(name="broadcasts.dispatch")
def broadcast_dispatch_task(broadcast_id: str) -> None:
    """Start (or continue) sending a broadcast. Safe to run twice."""
    from broadcasts import delivery

    delivery.broadcast_dispatch(broadcast_id=broadcast_id)


def enqueue_dispatch(broadcast_id: str) -> None:
    """Wake the workers for a broadcast. Call it from ``transaction.on_commit`` only."""
    broadcast_dispatch_task.delay(broadcast_id)
