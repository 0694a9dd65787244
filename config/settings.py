"""Django settings, read from the environment (django-environ).

Every variable is optional in development; see the README's configuration table.
"""

import hashlib
import ipaddress
import logging
import tempfile
import warnings
from datetime import timedelta
from pathlib import Path

import environ
from kombu import Exchange, Queue

from config.multiproc import multiproc_dir_setup

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()

# https://docs.djangoproject.com/en/5.2/howto/deployment/checklist/
# DEBUG is off unless asked for (`make run` sets DEBUG=true); with it off, SECRET_KEY and ALLOWED_HOSTS must be set:
# the dev values below exist only when DEBUG is on.
DEBUG = env.bool("DEBUG", default=False)
SECRET_KEY = env("SECRET_KEY", default="dev-insecure-secret-key-change-me" if DEBUG else None)
if not SECRET_KEY:
    raise environ.ImproperlyConfigured(
        "SECRET_KEY must be set when DEBUG is off. For the demo's environment: `make manage ARGS=...`, or "
        "`source var/demo.env` while `make run` runs."
    )
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "testserver"] if DEBUG else [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "core",
    "tokens",
    "templates_registry",
    "broadcasts",
    "whatsapp",
    "events",
    # The admin's login throttle (config/admin_settings.py).
    "axes",
]

MIDDLEWARE = [
    # First: every response, whatever answers it below, carries X-Request-Id, and every log line the request's id.
    "core.middleware.RequestIdMiddleware",
    # Every request counted and timed by route template and status (GET /metrics), whatever answers it below.
    "core.request_metrics.RequestMetricsMiddleware",
    # Then: a body over API_MAX_BODY_BYTES under /v1/ is refused (413) before anything reads or parses it.
    "core.middleware.BodySizeLimitMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # Serves admin and API-docs assets from the service itself, with no CDN (docs/api.md).
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # RateLimit-Policy / RateLimit on every response to a request with a valid token (docs/api.md).
    "core.middleware.RateLimitHeadersMiddleware",
    # Last, as django-axes asks: turns a locked-out login into its lockout page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database -----------------------------------------------------------------
# PostgreSQL only, everywhere (`make run` and `make test` start local servers of their own: scripts/services.py).
DATABASE_URL = env("DATABASE_URL", default="")
if not DATABASE_URL:
    raise environ.ImproperlyConfigured(
        "DATABASE_URL is not set: it must name a PostgreSQL database (postgres://user:password@host:5432/name). "
        "For the demo's servers: `make manage ARGS=...`, or `source var/demo.env` while `make run` runs."
    )
if DATABASE_URL.split("://", 1)[0] not in ("postgres", "postgresql", "pgsql") or "://" not in DATABASE_URL:
    raise environ.ImproperlyConfigured(
        "DATABASE_URL must name a PostgreSQL database (postgres://user:password@host:5432/name); "
        f"got {DATABASE_URL.split('://', 1)[0][:40]!r}."
    )
DATABASES = {"default": env.db_url_config(DATABASE_URL)}
# Persistent connections: a worker reuses its connection instead of opening one per task.
DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=60)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis / cache --------------------------------------------------------------
# Redis (or Valkey) is the Celery broker, the cache and the engine's limiter store; there is no other broker.
REDIS_URL = env("REDIS_URL", default="")
if not REDIS_URL.startswith(("redis://", "rediss://", "unix://")):
    raise environ.ImproperlyConfigured(
        "REDIS_URL must name a Redis or Valkey server (redis://host:6379/0)"
        + (f"; got {REDIS_URL.split(':', 1)[0]}:" if REDIS_URL else " and is not set")
        + ". For the demo's servers: `make manage ARGS=...`, or `source var/demo.env` while `make run` runs."
    )
# Short socket timeouts: with Redis down or hung, a cache call (throttle, endpoint list) fails within ~2 s
# and the API answers 503 instead of holding a web worker.
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 2},
    }
}

# --- Auth, i18n, static -----------------------------------------------------------
# Django's four validators, for passwords set by a form or `changepassword` (createsuperuser asks before a weak one).
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# First, django-axes refuses a username + address with too many recent failures, before any password is checked.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
from config.admin_settings import *  # noqa: E402, F403

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
# Find assets in the apps too, so tests and the demo need no collectstatic run. Without a collectstatic run
# STATIC_ROOT does not exist, and WhiteNoise would warn about it on every process start: nothing is missing.
WHITENOISE_USE_FINDERS = True
warnings.filterwarnings("ignore", message="No directory at")

# --- Security: HTTPS behind a TLS-terminating proxy (README "Production") -----------------------------
# https://docs.djangoproject.com/en/5.2/ref/middleware/#module-django.middleware.security
# SECURE_PROXY_SSL_HEADER=HTTP_X_FORWARDED_PROTO,https makes Django trust the proxy's header for request.is_secure().
# Unset by default: it is safe only behind a proxy that always sets (or strips) that header.
_proxy_ssl_header = env.list("SECURE_PROXY_SSL_HEADER", default=[])
if _proxy_ssl_header:
    if len(_proxy_ssl_header) != 2:
        raise environ.ImproperlyConfigured(
            "SECURE_PROXY_SSL_HEADER is 'HEADER,value', e.g. HTTP_X_FORWARDED_PROTO,https"
        )
    SECURE_PROXY_SSL_HEADER = (_proxy_ssl_header[0], _proxy_ssl_header[1])
# Origins (scheme included) whose admin form POSTs are accepted, e.g. https://api.example.com.
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])
# Admin session and CSRF cookies only over HTTPS in production; the demo runs on plain http.
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=not DEBUG)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=not DEBUG)
# Under /v1/ even a CSRF refusal is the JSON error envelope (the admin keeps Django's page).
CSRF_FAILURE_VIEW = "core.api.views.csrf_failure"
# Off unless asked for: the proxy usually redirects http itself, and without SECURE_PROXY_SSL_HEADER every request
# would look like http and redirect forever. The health check stays reachable over http for load balancers.
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=False)
SECURE_REDIRECT_EXEMPT = [r"^v1/health(?:/live)?$"]
# HSTS is remembered by browsers for SECURE_HSTS_SECONDS: 0 (off) unless the operator knows every host is on HTTPS.
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=False)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=False)
# Secrets at rest (core/crypto.py): comma-separated Fernet keys, the first encrypts, all decrypt. Unset: one key
# derived from SECRET_KEY (fine for development; `manage.py check --deploy` warns).
ENCRYPTION_KEYS = env.list("ENCRYPTION_KEYS", default=[])

# A 5000-recipient body with 1 KB of meta_data each is ~6 MB; 10 MiB is the contract's ceiling.
API_MAX_BODY_BYTES = 10 * 1024 * 1024
DATA_UPLOAD_MAX_MEMORY_SIZE = API_MAX_BODY_BYTES

# --- REST framework -----------------------------------------------------------------
API_RATE_LIMITS = env("API_RATE_LIMITS", default="60/min,1000/hour")
# Every token of one organization together (docs/api.md): more tokens buy no more requests. Empty: no such limit.
API_ORG_RATE_LIMITS = env("API_ORG_RATE_LIMITS", default="300/min,5000/hour")
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["tokens.authentication.BearerTokenAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["tokens.permissions.HasRequiredScope"],
    "DEFAULT_RENDERER_CLASSES": ["core.api.renderers.ORJSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["core.api.parsers.ORJSONParser"],
    "EXCEPTION_HANDLER": "core.api.exception_handler.api_exception_handler",
    # Per-token and per-organization limits (API_RATE_LIMITS, API_ORG_RATE_LIMITS), counted in Redis across processes.
    "DEFAULT_THROTTLE_CLASSES": ["core.api.throttling.TokenRateThrottle"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "UNAUTHENTICATED_USER": None,
}
# The service's version (config/__init__.py): GET /v1/health and the schema's info.version report it.
from config import __version__ as VERSION  # noqa: E402

SPECTACULAR_SETTINGS = {
    "TITLE": "Bulk WhatsApp template broadcasts API",
    "DESCRIPTION": "Send one approved WhatsApp template to up to 5000 recipients per request.",
    "VERSION": VERSION,
    "SERVE_INCLUDE_SCHEMA": False,
    # The schema and docs need no token, and a bad one must not turn them into a 401.
    "SERVE_AUTHENTICATION": [],
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # Several serializers carry a broadcast's or a send's status: one named enum each, not a hashed name.
    "ENUM_NAME_OVERRIDES": {
        "BroadcastStatusEnum": "broadcasts.models.BroadcastStatus",
        "SendStatusEnum": "broadcasts.models.SendStatus",
    },
    # OpenAPI 3.1, for its top-level `webhooks`: every customer event type, its body and signature headers.
    "OAS_VERSION": "3.1.0",
    "WEBHOOKS": [
        "events.openapi.MESSAGE_SENT",
        "events.openapi.MESSAGE_DELIVERED",
        "events.openapi.MESSAGE_READ",
        "events.openapi.MESSAGE_FAILED",
        "events.openapi.BROADCAST_PAUSED",
        "events.openapi.BROADCAST_COMPLETED",
        "events.openapi.BROADCAST_CANCELLED",
        "events.openapi.SUPPRESSION_ADDED",
        "events.openapi.SUPPRESSION_REMOVED",
        "events.openapi.PING",
    ],
}

# --- WhatsApp -------------------------------------------------------------------------
WHATSAPP_GRAPH_URL = env("WHATSAPP_GRAPH_URL", default="https://graph.facebook.com/v23.0").rstrip("/")
WHATSAPP_APP_SECRET = env("WHATSAPP_APP_SECRET", default="")
WHATSAPP_VERIFY_TOKEN = env("WHATSAPP_VERIFY_TOKEN", default="")
WEBHOOKS_ALLOW_PRIVATE = env.bool("WEBHOOKS_ALLOW_PRIVATE", default=False)
# One outbound event delivery attempt, from connecting to the last byte of the answer (docs/api.md: 10 s).
EVENTS_DELIVERY_TIMEOUT_SECONDS = env.float("EVENTS_DELIVERY_TIMEOUT_SECONDS", default=10.0)
# POST /v1/webhooks/{id}/ping answers within this, whatever the endpoint (or its DNS) does (docs/api.md: 5 s).
EVENTS_PING_TIMEOUT_SECONDS = env.float("EVENTS_PING_TIMEOUT_SECONDS", default=5.0)
# Endpoints an organization may register (docs/api.md); one more is a 409.
WEBHOOK_ENDPOINTS_MAX = env.int("WEBHOOK_ENDPOINTS_MAX", default=10)
# Delivery tasks of one organization running at once across all workers (docs/operations.md): an organization's
# slow endpoints hold at most this many of the events queue's worker processes, whatever their number.
EVENTS_ORG_MAX_IN_FLIGHT = env.int("EVENTS_ORG_MAX_IN_FLIGHT", default=1)
# Delivery tasks of failing endpoints (of every organization) running at once: their retries, 10 s each when the
# endpoint hangs, share this many worker processes and never take the ones healthy endpoints need.
EVENTS_FAILING_MAX_IN_FLIGHT = env.int("EVENTS_FAILING_MAX_IN_FLIGHT", default=1)
SECRET_ROTATION_OVERLAP_SECONDS = env.int("SECRET_ROTATION_OVERLAP_SECONDS", default=86400)  # old secret signs too
# Meta's moving windows (docs/rules.md): the messaging limit counts unique numbers over this many seconds, and a
# customer who wrote opens a customer-service window this long. 24 h each; tests shorten them.
MESSAGING_LIMIT_WINDOW_SECONDS = env.float("MESSAGING_LIMIT_WINDOW_SECONDS", default=86400.0)
CUSTOMER_SERVICE_WINDOW_SECONDS = env.float("CUSTOMER_SERVICE_WINDOW_SECONDS", default=86400.0)

# --- Celery -------------------------------------------------------------------------------
# https://docs.celeryq.dev/en/stable/userguide/configuration.html
# The database is the truth and the broker only wakes workers: every setting below assumes a message can be
# lost or delivered twice, and the beat sweeper (broadcasts.sweep) finds the work again from the rows.
CELERY_BROKER_URL = REDIS_URL
# Unacked (acks_late) messages come back after this; it must exceed the longest countdown we use
# (retry wakes <= DELIVERY_RETRY_MAX_SECONDS) and the longest task run, or a task would run twice early.
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TIMEZONE = "UTC"
# THREE queues (docs/operations.md): `delivery` (dispatch, chunk pumps), `events` (customer event deliveries) and
# `maintenance` (beat's sweeps, purges, the unmatched-status retry, the heartbeat ping), so busy pumps never starve
# the sweeps or the events. Each is published through the anonymous exchange "" with routing_key = the queue's
# name: kombu's Redis transport then LPUSHes straight onto the list of that name, with no exchange or binding keys
# in Redis, so a FLUSHALL of the broker cannot make later messages undeliverable (tests/test_queues.py). Which task
# goes where: broadcasts/queue.py and events/queue.py (ROUTES, by task name). A plain `celery -A config worker`
# consumes all three; `-Q delivery` (or `-Q events,maintenance`) splits them across machines (README).
CELERY_TASK_QUEUES = [Queue(name, Exchange(""), routing_key=name) for name in ("delivery", "events", "maintenance")]
CELERY_TASK_ROUTES = ["config.celery.task_route"]
# A task no route names (none today) goes to maintenance, which every layout serves; never to a queue nobody reads.
CELERY_TASK_DEFAULT_QUEUE = "maintenance"
CELERY_TASK_DEFAULT_EXCHANGE = ""
CELERY_TASK_DEFAULT_ROUTING_KEY = "maintenance"
CELERY_TASK_CREATE_MISSING_QUEUES = False
# Re-deliver a task whose worker died mid-run; the database claim makes a second run harmless.
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
# Delivery tasks are long (a chunk of sends); do not let one worker hoard messages.
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# Default bounds for every task; the chunk task sets its own, below its send lease (broadcasts/tasks.py).
# https://docs.celeryq.dev/en/stable/userguide/configuration.html#task-time-limit
CELERY_TASK_SOFT_TIME_LIMIT = 120
CELERY_TASK_TIME_LIMIT = 150
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Keep retrying a lost broker forever: a worker must survive a Redis restart and go on (docs/rules.md).
CELERY_BROKER_CONNECTION_MAX_RETRIES = None
# A Celery worker is long-lived: recycle a child now and then to bound leaks, never mid-chunk.
CELERY_WORKER_MAX_TASKS_PER_CHILD = 5000

# --- Delivery engine (broadcasts/delivery/): its knobs, one environment variable each ---
from config.delivery_settings import *  # noqa: E402, F403
from config.delivery_settings import DELIVERY_START_DUE_INTERVAL, DELIVERY_SWEEP_INTERVAL  # noqa: E402

# The engine's Redis (channel caps, number holds, running places, wakes, the outcome journal): REDIS_URL unless
# set; `redis+cluster://host:port` names a Redis Cluster (core/redis.py). The Celery broker stays on REDIS_URL.
LIMITER_REDIS_URL = env("LIMITER_REDIS_URL", default="") or REDIS_URL

CELERY_BEAT_SCHEDULE: dict = {
    "broadcasts-start-due": {"task": "broadcasts.start_due", "schedule": DELIVERY_START_DUE_INTERVAL},
    "broadcasts-sweep": {"task": "broadcasts.sweep", "schedule": DELIVERY_SWEEP_INTERVAL},
    # Outbound customer events: expire 24 h-old deliveries, wake endpoints with due retries.
    "events-sweep": {"task": "events.sweep", "schedule": 10.0},
    # Meta statuses that beat their wamid to the database: re-applied for 10 minutes, then dropped.
    "broadcasts-unmatched-statuses-retry": {"task": "broadcasts.unmatched_statuses_retry", "schedule": 10.0},
    # Idempotency-Key records answer for 24 h; lookups ignore older ones, this keeps the table small.
    "broadcasts-idempotency-purge": {"task": "broadcasts.idempotency_purge", "schedule": 3600.0},
    # Worker liveness for /v1/health and msg_worker_last_seen_seconds (core/heartbeat.py).
    "core-heartbeat": {"task": "core.heartbeat", "schedule": 15.0},
    # Retention (docs/operations.md): sends of broadcasts that ended RETENTION_DAYS ago, in bounded batches.
    "broadcasts-retention-purge": {"task": "broadcasts.retention_purge", "schedule": 600.0},
}
# Every beat entry goes to the maintenance queue (also what task_route says for these names).
for _entry in CELERY_BEAT_SCHEDULE.values():
    _entry.setdefault("options", {})["queue"] = "maintenance"
# Beat's schedule file only keeps last-run times, and every beat task is an idempotent sweep: kept in a temporary
# directory unless set (nothing to create in a fresh checkout). Losing it is harmless: each interval starts over.
CELERY_BEAT_SCHEDULE_FILENAME = env(
    "CELERY_BEAT_SCHEDULE_FILENAME",
    default=str(
        Path(tempfile.gettempdir()) / f"celerybeat-schedule-{hashlib.sha256(bytes(BASE_DIR)).hexdigest()[:12]}"
    ),
)

# --- Metrics (core/metrics.py, GET /metrics) -------------------------------------------------------
# GET /metrics answers only these REMOTE_ADDRs (the socket's peer: behind a proxy, scrape each process directly).
METRICS_ALLOWED_CIDRS = env.list("METRICS_ALLOWED_CIDRS", default=["127.0.0.0/8", "::1"])
try:
    METRICS_ALLOWED_NETWORKS = [ipaddress.ip_network(cidr.strip(), strict=False) for cidr in METRICS_ALLOWED_CIDRS]
except ValueError as exc:
    raise environ.ImproperlyConfigured(f"METRICS_ALLOWED_CIDRS: {exc}") from None
# prometheus_client's multiprocess files (gunicorn workers, prefork children): one directory per deployment.
PROMETHEUS_MULTIPROC_DIR = multiproc_dir_setup(BASE_DIR)

# --- Logs and error reporting (docs/operations.md; core/logging.py) --------------------------------------------------
# LOG_FORMAT=json: one JSON object per line (time, level, logger, message, request_id, and task_id / task_name in a
# Celery task, exception when any); text: the same as a readable line. Secrets are redacted in either. The Celery
# worker and beat use this too (config/celery.py), gunicorn through --logger-class core.logging.GunicornLogger.
from core.logging import log_format_check, log_format_default, logging_config, sentry_before_send  # noqa: E402

LOG_FORMAT = log_format_check(env("LOG_FORMAT", default=log_format_default(DEBUG)))
LOG_LEVEL = env("LOG_LEVEL", default="INFO")
LOGGING = logging_config(log_format=LOG_FORMAT, level=LOG_LEVEL)
# Python warnings become log lines (logger py.warnings) in the same format, instead of raw text on stderr.
logging.captureWarnings(True)
# Celery keeps its hands off the root logger: the LOGGING above is the workers' too.
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
# Optional error reporting: nothing is initialised unless SENTRY_DSN is set. No personal data is sent, and every
# event passes through the same redaction as the logs.
SENTRY_DSN = env("SENTRY_DSN", default="")
if SENTRY_DSN:
    import sentry_sdk
    from sentry_sdk.integrations.celery import CeleryIntegration
    from sentry_sdk.integrations.django import DjangoIntegration

    sentry_sdk.init(
        dsn=SENTRY_DSN,
        integrations=[DjangoIntegration(), CeleryIntegration()],
        send_default_pii=False,
        environment=env("SENTRY_ENVIRONMENT", default="production"),
        before_send=sentry_before_send,
        before_breadcrumb=sentry_before_send,
    )
# --- end of logs and error reporting ----------------------------------------------------------------------------

SESSION_COOKIE_AGE = int(timedelta(hours=12).total_seconds())
