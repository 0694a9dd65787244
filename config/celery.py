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
