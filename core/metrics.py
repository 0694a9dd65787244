"""The service's Prometheus series (names fixed by the operations docs) and the registry GET /metrics serves.

Multiprocess mode (prometheus_client): every gunicorn worker and Celery process writes its counters and histograms
to files in PROMETHEUS_MULTIPROC_DIR (config/multiproc.py: one directory per deployment), and a scrape sums them.
Recording is cheap by design: the engine adds a batch's counts with one ``inc`` per (outcome, code), one histogram
``observe`` per POST. Gauges are not recorded by processes: they are computed at scrape time by collectors that read
the database or Redis (``scrape_collector_register``): core's below (queue depth, heartbeats), the apps' own
(``broadcasts/metrics.py``: pending sends, the oldest one's age, channel rate and cap).

core imports no app: apps register their collectors from their AppConfig.ready.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping

from django.conf import settings
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest, multiprocess
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from core.health import heartbeat_age

logger = logging.getLogger(__name__)

# --- recorded where things happen -----------------------------------------------------------------------------
SENDS = Counter(
    "msg_sends",
    "Send attempts' outcomes as recorded: sent, failed (final), retried (attempt failed, send still pending), "
    "unknown (no answer after the request may have left); code is Meta's error code or our word, '' for sent.",
    ["channel", "outcome", "code"],
)
META_REQUEST_SECONDS = Histogram(
    "msg_meta_request_seconds",
    "Latency of each POST to the Graph API, from sending to the answer (or the timeout).",
    ["channel", "route"],
    buckets=(0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0),
)
META_WEBHOOK_SECONDS = Histogram(
    "msg_meta_webhook_seconds",
    "Processing time of POST /v1/webhooks/whatsapp (signature, parsing, status updates, events), any answer.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
# The funnel as Meta's status webhooks report it: each send counted once per status it reaches (a send read without
# a "delivered" status first counts as delivered too, so delivered >= read). Failures reported by webhook also move
# msg_sends_total{outcome="failed"}, so a send Meta accepted and then failed counts once as sent and once as failed.
META_STATUSES = Counter(
    "msg_meta_statuses",
    "Sends moved by Meta's status webhooks: delivered, read, failed; code is Meta's error code for failed, else ''.",
    ["channel", "status", "code"],
)
BROADCAST_PAUSES = Counter(
    "msg_broadcast_pauses",
    "Broadcasts paused, by paused_reason.code: manual, budget_exceeded, template_paused, or Meta's error code.",
    ["code"],
)
EVENT_DELIVERIES = Counter(
    "msg_event_deliveries",
    "Outbound customer event delivery attempts: delivered, failed, timeout; disabled counts endpoints disabled "
    "by a failed attempt.",
    ["outcome"],
)


def sends_add(*, channel_id: str, counts: Mapping[tuple[str, str], int]) -> None:
    """Add one batch's outcomes: ``{(outcome, code): n}``. Never raises (metrics must not break delivery)."""
    try:
        for (outcome, code), n in counts.items():
            SENDS.labels(channel_id, outcome, code).inc(n)
    except Exception:  # noqa: BLE001 - e.g. the directory vanished: lose a count, never a send
        logger.warning("metrics: sends not counted", exc_info=True)


def statuses_add(*, counts: Mapping[tuple[str, str, str], int]) -> None:
    """Add one webhook body's moves: ``{(channel, status, code): n}`` with status delivered, read or failed; a failed
    one moves msg_sends_total{outcome="failed", code} too. Never raises."""
    try:
        for (channel_id, status, code), n in counts.items():
            if not n:
                continue
            META_STATUSES.labels(channel_id, status, code).inc(n)
            if status == "failed":
                SENDS.labels(channel_id, "failed", code).inc(n)
    except Exception:  # noqa: BLE001
        logger.warning("metrics: statuses not counted", exc_info=True)


def broadcast_pause_count(*, code: str) -> None:
    """One broadcast paused for ``code``. Never raises."""
    try:
        BROADCAST_PAUSES.labels(code).inc()
    except Exception:  # noqa: BLE001
        logger.warning("metrics: pause not counted", exc_info=True)


def event_deliveries_add(counts: Mapping[str, int]) -> None:
    """Add attempts by outcome ``{"delivered": n, ...}``. Never raises."""
    try:
        for outcome, n in counts.items():
            if n:
                EVENT_DELIVERIES.labels(outcome).inc(n)
    except Exception:  # noqa: BLE001
        logger.warning("metrics: event deliveries not counted", exc_info=True)


# --- computed at scrape time ------------------------------------------------------------------------------------
_SCRAPE_COLLECTORS: dict[str, Collector] = {}


def scrape_collector_register(name: str, collector: Collector) -> None:
    """Add a collector to every scrape (once per name: AppConfig.ready may run twice in tests)."""
    _SCRAPE_COLLECTORS[name] = collector


class CeleryQueueCollector(Collector):
    """msg_celery_queue_depth{queue}: messages waiting in each Celery queue (Redis LLEN; countdown tasks a worker
    already holds are not in the list). Nothing with the embedded broker of the demo."""

    def collect(self) -> Iterable[GaugeMetricFamily]:
        broker = str(getattr(settings, "CELERY_BROKER_URL", "") or "")
        if not broker.startswith(("redis://", "rediss://")):
            return []
        import redis

        names = [queue.name for queue in settings.CELERY_TASK_QUEUES]
        family = GaugeMetricFamily("msg_celery_queue_depth", "Messages waiting in the Celery queue.", labels=["queue"])
        client = redis.Redis.from_url(broker, socket_connect_timeout=1, socket_timeout=1)
        try:
            with client.pipeline(transaction=False) as pipe:
                for name in names:
                    pipe.llen(name)
                depths = pipe.execute()
        except Exception as exc:  # noqa: BLE001 - Redis away: no series this scrape (health says so)
            logger.warning("metrics: queue depth not read (%s)", exc.__class__.__name__)
            return []
        finally:
            client.close()
        for name, depth in zip(names, depths, strict=True):
            family.add_metric([name], float(depth))
        return [family]


class HeartbeatCollector(Collector):
    """msg_worker_last_seen_seconds, msg_beat_last_seen_seconds: seconds since the last heartbeat (+Inf: never)."""

    def collect(self) -> Iterable[GaugeMetricFamily]:
        for kind in ("worker", "beat"):
            age = heartbeat_age(kind)
            yield GaugeMetricFamily(
                f"msg_{kind}_last_seen_seconds",
                f"Seconds since a Celery {kind} was last seen (heartbeat in the cache).",
                value=float("inf") if age is None else age,
            )


scrape_collector_register("celery_queues", CeleryQueueCollector())
scrape_collector_register("heartbeats", HeartbeatCollector())


def metrics_exposition() -> bytes:
    """The Prometheus text exposition of every process's series and every scrape-time collector."""
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=settings.PROMETHEUS_MULTIPROC_DIR)
    for collector in _SCRAPE_COLLECTORS.values():
        registry.register(_Guarded(collector))
    return generate_latest(registry)


class _Guarded(Collector):
    """A collector whose failure (database down) drops its own series, not the whole scrape."""

    def __init__(self, collector: Collector):
        self.collector = collector

    def collect(self):
        try:
            return list(self.collector.collect())
        except Exception as exc:  # noqa: BLE001
            logger.warning("metrics: %s failed (%s)", type(self.collector).__name__, exc.__class__.__name__)
            return []

    def describe(self):
        return []
