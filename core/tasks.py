"""Celery tasks of core. Nothing imports this module: beat schedules ``core.heartbeat`` by name (config/settings.py)."""

from celery import shared_task

from core.health import heartbeat_touch


@shared_task(name="core.heartbeat", ignore_result=True)
def heartbeat_task() -> None:
    """Beat, every 15 s, on the maintenance queue: a worker that runs it is alive (GET /v1/health "worker")."""
    heartbeat_touch("worker")
