"""The Celery application. Settings live in Django settings under the CELERY_ namespace.

Logging: the worker and beat write through Django's ``LOGGING`` (core/logging.py), in ``LOG_FORMAT`` like the web,
with the task's id and name on every line a task writes. With ``LOG_FORMAT=json`` their start-up banners (plain
text on stdout) become one JSON line, so that every line they write parses.
"""

import logging
import logging.config
import os

from celery import Celery, signals
from celery.apps.beat import Beat as _Beat
from kombu.utils.objects import cached_property

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")


class JsonBeat(_Beat):
    """celery beat without its plain-text banner when the logs are JSON (its own "beat: Starting..." line stays)."""

    def __init__(self, *args, quiet: bool = False, **kwargs) -> None:
        super().__init__(*args, quiet=quiet or _json_logs(), **kwargs)


class MessagingCelery(Celery):
    @cached_property
    def Beat(self):  # noqa: N802 - Celery's name
        return self.subclass_with_self(JsonBeat)


app = MessagingCelery("messaging")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


def _json_logs() -> bool:
    from django.conf import settings

    return settings.LOG_FORMAT == "json"


@signals.setup_logging.connect
def _logging_from_django(loglevel=None, **kwargs) -> None:
    """Celery configures no handler of its own (a receiver exists): Django's LOGGING applies, at the CLI's level."""
    from django.conf import settings

    logging.config.dictConfig(settings.LOGGING)
    if loglevel:
        logging.getLogger().setLevel(loglevel)


@signals.celeryd_after_setup.connect
def _banner_as_a_log_line(sender, instance, **kwargs) -> None:
    """With JSON logs, the worker's banner (printed on stdout) is logged as one line instead."""
    if _json_logs() and not instance.quiet:
        instance.quiet = True
        logging.getLogger("celery.apps.worker").info(
            "celery worker %s starting\n%s", sender, instance.startup_info(artlines=False)
        )


@signals.task_prerun.connect
def _task_context_start(task_id=None, task=None, **kwargs) -> None:
    from core.logging import task_context_set

    task_context_set(task_id, getattr(task, "name", None))


@signals.task_postrun.connect
def _task_context_end(**kwargs) -> None:
    from core.logging import task_context_set

    task_context_set(None, None)


# --- Queues, metrics' multiprocess files, heartbeats (docs/operations.md) ---
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


@signals.worker_process_shutdown.connect
@signals.worker_shutdown.connect
def _delivery_runtimes_close(**kwargs) -> None:
    """A worker process on its way out closes its delivery runtimes (the Graph client's aiohttp session, its
    loop): no "Unclosed connector" error at shutdown. Prefork children get worker_process_shutdown; the threads
    and solo pools run tasks in the main process, which gets worker_shutdown."""
    from broadcasts.delivery.runtime import runtimes_close

    runtimes_close()


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
