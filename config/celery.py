"""The Celery application. Settings live in Django settings under the CELERY_ namespace."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("messaging")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


# --- Queues, metrics' multiprocess files, heartbeats (CONTRACT 13) -------------------------------------------------
import functools  # noqa: E402
import time  # noqa: E402

from celery import bootsteps, signals  # noqa: E402

# How often a running worker's main loop writes its heartbeat (GET /v1/health says "stale" after 60 s).
WORKER_HEARTBEAT_SECONDS = 15.0
# Beat writes its own at most this often, on the publishes of its ticks (start_due every ~5 s).
BEAT_HEARTBEAT_SECONDS = 5.0


@functools.cache
def _routes() -> dict[str, str]:
    from broadcasts.queue import ROUTES as broadcasts_routes
    from events.queue import ROUTES as events_routes

    return {**broadcasts_routes, **events_routes}


def task_route(name: str, args, kwargs, options, task=None, **kw) -> dict | None:
    """CELERY_TASK_ROUTES: each task's queue by name (broadcasts/queue.py, events/queue.py); others go to the
    default queue (maintenance). The queue's anonymous-exchange routing is declared in settings."""
    queue = _routes().get(name)
    return {"queue": queue} if queue else None


@signals.worker_process_shutdown.connect
def _metrics_process_dead(pid=None, **kwargs) -> None:
    """A prefork child's live gauges leave the sums with it (its counters stay: they never go backwards)."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(pid or os.getpid())


class WorkerHeartbeat(bootsteps.StartStopStep):
    """Writes the worker's heartbeat now and every WORKER_HEARTBEAT_SECONDS from its main loop's timer: a worker
    whose loop is stuck goes stale. (Workers running beat's `core.heartbeat` task write it too.)"""

    requires = {"celery.worker.components:Timer"}

    def __init__(self, worker, **kwargs):
        super().__init__(worker, **kwargs)
        self.tref = None

    def start(self, worker) -> None:
        from core.health import heartbeat_touch

        heartbeat_touch("worker")
        self.tref = worker.timer.call_repeatedly(WORKER_HEARTBEAT_SECONDS, heartbeat_touch, ("worker",))

    def stop(self, worker) -> None:
        if self.tref is not None:
            self.tref.cancel()


app.steps["worker"].add(WorkerHeartbeat)

_beat = {"running": False, "touched": 0.0}


@signals.beat_init.connect
def _beat_started(**kwargs) -> None:
    from core.health import heartbeat_touch

    _beat["running"] = True
    _beat["touched"] = time.monotonic()
    heartbeat_touch("beat")


@signals.before_task_publish.connect
def _beat_tick(**kwargs) -> None:
    """In the beat process, each tick's publish says beat is alive (at most every BEAT_HEARTBEAT_SECONDS)."""
    if _beat["running"] and time.monotonic() - _beat["touched"] >= BEAT_HEARTBEAT_SECONDS:
        from core.health import heartbeat_touch

        _beat["touched"] = time.monotonic()
        heartbeat_touch("beat")
