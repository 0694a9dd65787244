"""Log lines (docs/operations.md): JSON or text, with the request id, and never a secret.

``LOG_FORMAT=json`` writes one JSON object per line::

    {"time": "2026-05-01T12:00:00.123Z", "level": "INFO", "logger": "django.request", "message": "...",
     "request_id": "5f0c...", "task_id": "...", "task_name": "...", "exception": "Traceback ..."}

``request_id`` is on every line (null outside a request); ``task_id`` / ``task_name`` only inside a Celery task,
``exception`` only when there is one. ``LOG_FORMAT=text`` writes the same as one readable line.

Used by Django's ``LOGGING`` (config/settings.py), the Celery worker and beat (config/celery.py) and gunicorn
(``--logger-class core.logging.GunicornLogger``). Nothing here needs Django at import time: gunicorn's master
imports it before any settings exist.
"""

from __future__ import annotations

import contextvars
import logging
import os
import re
import time
from collections.abc import Iterable
from typing import Any

from pythonjsonlogger.json import JsonFormatter as _BaseJsonFormatter

# --- Context: the request id (core.middleware) and the Celery task (config/celery.py) -------------------------
_request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)
_task: contextvars.ContextVar[tuple[str, str] | None] = contextvars.ContextVar("celery_task", default=None)


def request_id_get() -> str | None:
    """The id of the request being served, or None outside a request."""
    return _request_id.get()


def request_id_set(value: str | None) -> contextvars.Token:
    return _request_id.set(value)


def request_id_reset(token: contextvars.Token) -> None:
    _request_id.reset(token)


def task_context_set(task_id: str | None, task_name: str | None) -> None:
    """Called by Celery's task_prerun / task_postrun (None, None) in the thread or process running the task."""
    _task.set((task_id or "", task_name or "") if task_id or task_name else None)


class ContextFilter(logging.Filter):
    """Puts ``request_id`` (and ``task_id`` / ``task_name`` inside a task) on every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            # django.request logs a response after the middleware chain has returned: the request knows its id.
            record.request_id = _request_id.get() or getattr(getattr(record, "request", None), "request_id", None)
        task = _task.get()
        if task is not None and not hasattr(record, "task_id"):
            record.task_id, record.task_name = task
        return True


# --- Redaction ------------------------------------------------------------------------------------------------
_REDACTED = "[REDACTED]"
# Each pattern costs time linear in the text, whatever the text (docs/operations.md: no header or query makes a log
# line cost more than a normal one). Python's engine backtracks, so every pattern is written so that a failed
# attempt cannot retry what it already read: it starts at a literal (``kbai_pk_``, ``://``, a key name), each run of
# characters is one class the next token cannot continue (or possessive: ``*+``, ``++``), and no quantified group
# nests another. An unanchored ``[a-z][a-z0-9.]*://`` tried at every letter of ``a.a.a...`` was quadratic; so was
# ``\s*(?:[:=]|\s)\s*`` after a key followed by a long run of spaces.
_PATTERNS: list[tuple[re.Pattern[str], str]] = [
    # our API tokens, customer-event signing secrets, encrypted values at rest
    (re.compile(r"kbai_pk_[A-Za-z0-9_\-]++"), "kbai_pk_" + _REDACTED),
    (re.compile(r"whsec_[A-Za-z0-9+/=_\-]++"), "whsec_" + _REDACTED),
    (re.compile(r"enc1:[A-Za-z0-9_=\-]++"), "enc1:" + _REDACTED),
    # any Authorization value
    (re.compile(r"(?i)\b(bearer|basic)(\s++)[^\s'\",;]++"), r"\1\2" + _REDACTED),
    # access_token=..., "access_token": "...", 'verify_token': '...', hub.verify_token=..., --access-token ...
    (
        re.compile(
            r"(?i)\b((?:access|verify|refresh)[-_]token|(?:app|client)[-_]secret|password|passwd)"
            r"(\\?[\"']?(?:\s*+[:=]|\s)\s*+\\?[\"']?)(?!\[REDACTED\])[^\s\"'\\&,;}\]]++"
        ),
        r"\1\2" + _REDACTED,
    ),
    # Meta (Graph API) access tokens: "EAA" and a long base62 tail
    (re.compile(r"\bEAA[A-Za-z0-9_\-]{16,}+"), "EAA" + _REDACTED),
    # credentials in URLs: scheme://user:password@host. Found from its "://": neither run can cross a "/", so the
    # runs read from one "://" end before the next one starts.
    (re.compile(r"://([^:/\s@]*+):[^@\s/]++@"), r"://\1:" + _REDACTED + "@"),
]
# Configured secrets that have no recognisable shape; values shorter than this are not searched for (too common).
_SECRET_SETTINGS = ("WHATSAPP_APP_SECRET", "WHATSAPP_VERIFY_TOKEN", "SECRET_KEY")
_MIN_SECRET_LENGTH = 6


def _configured_secrets() -> list[str]:
    """The configured secret values: from Django settings once they exist, else from the environment."""
    values: list[str] = []
    try:
        from django.conf import settings

        configured = settings.configured
    except Exception:  # noqa: BLE001 - no Django (gunicorn master): the environment is the source
        configured = False
    for name in _SECRET_SETTINGS:
        value = getattr(settings, name, "") if configured else os.environ.get(name, "")
        if isinstance(value, str) and len(value) >= _MIN_SECRET_LENGTH:
            values.append(value)
    keys = getattr(settings, "ENCRYPTION_KEYS", []) if configured else os.environ.get("ENCRYPTION_KEYS", "").split(",")
    values.extend(k for k in keys if isinstance(k, str) and len(k) >= _MIN_SECRET_LENGTH)
    return values


# Longest client-given field (user agent, path and query) an access line keeps: what a person reads, and a bound on
# what any one request costs to log.
MAX_LOGGED_USER_AGENT = 512
MAX_LOGGED_PATH = 2048
# Where a cut field may end: never inside a token or value, whose kept head could escape redaction ("EAA" wants 16
# more characters to be recognised).
_CUT_AFTER = " \t&;,?/=\"'()"


def truncate(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters at a separator, saying how much was left out (linear)."""
    if len(text) <= limit:
        return text
    head = text[:limit]
    end = max(head.rfind(separator) for separator in _CUT_AFTER) + 1
    return f"{head[:end]}...[{len(text) - end} more characters]"


def redact(text: str, secrets: Iterable[str] | None = None) -> str:
    """``text`` with every token, secret and access token replaced by ``[REDACTED]``."""
    if not text:
        return text
    for value in _configured_secrets() if secrets is None else secrets:
        if value in text:
            text = text.replace(value, _REDACTED)
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def redact_data(value: Any, secrets: list[str] | None = None, *, stringify: bool = False, _depth: int = 0) -> Any:
    """Every string inside dicts, lists and tuples redacted (keys too). Other values stay as they are, or with
    ``stringify`` become their redacted str() (numbers, booleans and None stay)."""
    if secrets is None:
        secrets = _configured_secrets()
    if isinstance(value, str):
        return redact(value, secrets)
    if value is None or isinstance(value, (bool, int, float)) or _depth > 20:
        return value
    if isinstance(value, dict):
        return {
            (redact(k, secrets) if isinstance(k, str) else k): redact_data(
                v, secrets, stringify=stringify, _depth=_depth + 1
            )
            for k, v in value.items()
        }
    if isinstance(value, (list, tuple)):
        return type(value)(redact_data(v, secrets, stringify=stringify, _depth=_depth + 1) for v in value)
    return redact(str(value), secrets) if stringify else value


class RedactFilter(logging.Filter):
    """Redacts the message with its arguments and the exception text of every record a handler writes."""

    def filter(self, record: logging.LogRecord) -> bool:
        secrets = _configured_secrets()
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad format string: log what there is rather than nothing
            message = f"{record.msg!r} {record.args!r}"
        record.msg, record.args = redact(message, secrets), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text, secrets)
        if record.stack_info:
            record.stack_info = redact(record.stack_info, secrets)
        return True


# --- Formatters -----------------------------------------------------------------------------------------------
def iso_time(created: float) -> str:
    """``2026-05-01T12:00:00.123Z``: ISO 8601, UTC, milliseconds."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created)) + f".{int(created * 1000) % 1000:03d}Z"


_OWN_FIELDS = ("request_id", "task_id", "task_name", "taskName", "color_message")


class JsonFormatter(_BaseJsonFormatter):
    """One JSON object per line: time, level, logger, message, request_id, then task, exception and extras."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        from pythonjsonlogger.core import RESERVED_ATTRS

        kwargs.setdefault("reserved_attrs", [*RESERVED_ATTRS, *_OWN_FIELDS])
        kwargs.setdefault("rename_fields", {"exc_info": "exception", "stack_info": "stack"})
        super().__init__(*args, **kwargs)

    def add_fields(self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]) -> None:
        log_data["time"] = iso_time(record.created)
        log_data["level"] = record.levelname
        log_data["logger"] = record.name
        log_data["message"] = record.message
        log_data["request_id"] = getattr(record, "request_id", None)
        if getattr(record, "task_id", None) is not None:
            log_data["task_id"] = record.task_id
            log_data["task_name"] = record.task_name
        super().add_fields(log_data, record, message_dict)

    def formatException(self, ei: Any) -> str:  # noqa: N802 - logging's name
        return redact(super().formatException(ei))

    def process_log_record(self, log_data: dict[str, Any]) -> dict[str, Any]:
        # Extras (``extra={...}``) are redacted here; message and exception were by RedactFilter.
        # Any other object (django.request's ``request``) is logged as its str(), redacted too.
        fixed = ("time", "level", "logger", "message", "request_id", "task_id", "task_name", "exception", "stack")
        secrets: list[str] | None = None
        for key, value in log_data.items():
            if key in fixed or value is None or isinstance(value, (bool, int, float)):
                continue
            secrets = _configured_secrets() if secrets is None else secrets
            log_data[key] = redact_data(value, secrets, stringify=True)
        return log_data


class TextFormatter(logging.Formatter):
    """``2026-05-01T12:00:00.123Z INFO    django.request [req 5f0c...] message``"""

    def format(self, record: logging.LogRecord) -> str:
        record.message = record.getMessage()
        context = []
        if getattr(record, "request_id", None):
            context.append(f"req {record.request_id}")
        if getattr(record, "task_id", None):
            context.append(f"task {record.task_name}[{record.task_id}]")
        line = f"{iso_time(record.created)} {record.levelname:<7} {record.name}"
        if context:
            line += f" [{' '.join(context)}]"
        line += f" {record.message}"
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line += "\n" + record.exc_text
        if record.stack_info:
            line += "\n" + self.formatStack(record.stack_info)
        return line

    def formatException(self, ei: Any) -> str:  # noqa: N802 - logging's name
        return redact(super().formatException(ei))


# --- Configuration --------------------------------------------------------------------------------------------
LOG_FORMATS = ("json", "text")


def log_format_default(debug: bool) -> str:
    return "text" if debug else "json"


def log_format_from_env() -> str:
    """``LOG_FORMAT``, else ``text`` when ``DEBUG`` is on and ``json`` when off (as settings read them)."""
    import environ

    env = environ.Env()
    value = env("LOG_FORMAT", default="") or log_format_default(env.bool("DEBUG", default=False))
    return log_format_check(value)


def log_format_check(value: str) -> str:
    value = value.strip().lower()
    if value not in LOG_FORMATS:
        from django.core.exceptions import ImproperlyConfigured

        raise ImproperlyConfigured(f"LOG_FORMAT must be one of {', '.join(LOG_FORMATS)}, not {value!r}.")
    return value


def logging_config(*, log_format: str, level: str = "INFO") -> dict[str, Any]:
    """Django's ``LOGGING``: one handler on stderr with the context and redaction filters."""
    formatter = {"()": "core.logging.JsonFormatter"} if log_format == "json" else {"()": "core.logging.TextFormatter"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {
            "context": {"()": "core.logging.ContextFilter"},
            "redact": {"()": "core.logging.RedactFilter"},
        },
        "formatters": {"default": formatter},
        "handlers": {
            "console": {
                "class": "logging.StreamHandler",
                "formatter": "default",
                "filters": ["context", "redact"],
            }
        },
        "root": {"handlers": ["console"], "level": level.upper()},
        "loggers": {
            # Django's own loggers propagate to the root: one handler, one format.
            "django": {"handlers": [], "level": level.upper(), "propagate": True},
        },
    }


def formatter_for(log_format: str) -> logging.Formatter:
    return JsonFormatter() if log_format == "json" else TextFormatter()


# --- Sentry ---------------------------------------------------------------------------------------------------
def sentry_before_send(event: dict[str, Any], hint: dict[str, Any]) -> dict[str, Any]:
    """Sentry's ``before_send`` (and ``before_breadcrumb``): the event with every string redacted."""
    return redact_data(event)


# --- gunicorn -------------------------------------------------------------------------------------------------
try:
    from gunicorn.glogging import Logger as _GunicornLogger
except ImportError:  # pragma: no cover - gunicorn is a runtime dependency
    _GunicornLogger = object  # type: ignore[assignment,misc]


class GunicornLogger(_GunicornLogger):  # type: ignore[misc,valid-type]
    """gunicorn's error and access logs in ``LOG_FORMAT``, redacted; one access line per request.

    The access line's ``request_id`` is the ``X-Request-Id`` the response carries (core.middleware sets it).
    """

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        formatter = formatter_for(log_format_from_env())
        for log in (self.error_log, self.access_log):
            for handler in log.handlers:
                handler.setFormatter(formatter)
                handler.addFilter(RedactFilter())

    def access(self, resp: Any, req: Any, environ: dict[str, Any], request_time: Any) -> None:
        if not (self.cfg.accesslog or self.cfg.logconfig or self.cfg.logconfig_dict or self.cfg.syslog):
            return
        headers = {name.lower(): value for name, value in (resp.headers or [])}
        status = resp.status.split(None, 1)[0] if isinstance(resp.status, str) else resp.status
        path = environ.get("PATH_INFO", "")
        if environ.get("QUERY_STRING"):
            path += "?" + environ["QUERY_STRING"]
        path = truncate(path, MAX_LOGGED_PATH)
        method = environ.get("REQUEST_METHOD", "-")
        duration_ms = round(request_time.total_seconds() * 1000, 1)
        fields = {
            "request_id": headers.get("x-request-id") or None,
            "method": method,
            "path": path,
            "status": int(status) if str(status).isdigit() else status,
            "duration_ms": duration_ms,
            "bytes": getattr(resp, "sent", None),
            "remote_addr": environ.get("REMOTE_ADDR"),
            "user_agent": truncate(environ["HTTP_USER_AGENT"], MAX_LOGGED_USER_AGENT)
            if environ.get("HTTP_USER_AGENT")
            else None,
        }
        try:
            self.access_log.info("%s %s %s %.1fms", method, path, status, duration_ms, extra=fields)
        except Exception:  # noqa: BLE001 - as gunicorn's own access(): a log line never fails a request
            self.error("access log line failed", exc_info=True)
