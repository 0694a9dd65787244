"""The broadcasts' scrape-time series (core/metrics.py serves them; BroadcastsConfig.ready registers the collector)
and the per-second POST counts the engine leaves in Redis for them.

Each gauge is one cheap, indexed query at scrape time, proportional to what is pending, never to the sends stored:
- msg_sends_pending: PENDING sends of IN_PROGRESS broadcasts (index send_broadcast_status_idx, per broadcast);
- msg_oldest_pending_send_age_seconds: how long the oldest *due* PENDING send of a running broadcast has waited
  to be posted: since its broadcast started for a first attempt, since its next_attempt_at for a retry (0: none);
- msg_channel_sends_per_second / msg_channel_cap_sends_per_second, for each channel with a running broadcast: POSTs
  in the last full second (the one that ended 1-2 s before the scrape, counted in Redis by every pump) and its
  max_mps.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterable, Mapping

from django.db.models import Exists, Min, OuterRef
from django.utils import timezone
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from redis.exceptions import RedisError

from broadcasts.models import Broadcast, BroadcastStatus, Send, SendStatus
from core.redis import redis_client

logger = logging.getLogger(__name__)

# A second's count is complete in Redis ~CHECK_INTERVAL (0.5 s) after it ends; read the one that ended >= 1 s ago.
RATE_LAG_SECONDS = 2
_POSTS_KEY_TTL_SECONDS = 10


def _posts_key(channel_id: str, second: int) -> str:
    return f"metrics:posts:{channel_id}:{second}"


def channel_posts_add(*, channel_id: str, counts: Mapping[int, int]) -> None:
    """Add a pump's POSTs per wall-clock second ``{epoch_second: n}`` (one pipeline, every ~0.5 s). Never raises."""
    if not counts:
        return
    try:
        with redis_client().pipeline(transaction=False) as pipe:
            for second, n in counts.items():
                key = _posts_key(channel_id, second)
                pipe.incrby(key, n)
                pipe.expire(key, _POSTS_KEY_TTL_SECONDS)
            pipe.execute()
    except RedisError as exc:
        logger.debug("metrics: channel posts not counted (%s)", exc.__class__.__name__)


def channel_posts_in_second(channel_ids: list[str], second: int) -> dict[str, int]:
    if not channel_ids:
        return {}
    values = redis_client().mget([_posts_key(channel_id, second) for channel_id in channel_ids])
    return {channel_id: int(value or 0) for channel_id, value in zip(channel_ids, values, strict=True)}


def pending_stats(*, now=None) -> tuple[int, float]:
    """(PENDING sends of running broadcasts, seconds the oldest due one has waited; 0 when none is due)."""
    now = now or timezone.now()
    running = Broadcast.objects.filter(status=BroadcastStatus.IN_PROGRESS)
    pending = Send.objects.filter(broadcast__in=running, status=SendStatus.PENDING)
    count = pending.count()
    if not count:
        return 0, 0.0
    # First attempts wait since their broadcast started; the earliest such broadcast with any left is the oldest.
    first_attempts = Send.objects.filter(
        broadcast=OuterRef("pk"), status=SendStatus.PENDING, next_attempt_at__isnull=True
    )
    started = running.filter(Exists(first_attempts)).aggregate(at=Min("started_at"))["at"]
    # Retries wait since their next_attempt_at (index send_pending_due: PENDING only, by next_attempt_at).
    retry = pending.filter(next_attempt_at__lte=now).aggregate(at=Min("next_attempt_at"))["at"]
    oldest = min((at for at in (started, retry) if at is not None), default=None)
    return count, max(0.0, (now - oldest).total_seconds()) if oldest else 0.0


class DeliveryCollector(Collector):
    def collect(self) -> Iterable[GaugeMetricFamily]:
        count, age = pending_stats()
        yield GaugeMetricFamily("msg_sends_pending", "PENDING sends of running broadcasts.", value=count)
        yield GaugeMetricFamily(
            "msg_oldest_pending_send_age_seconds",
            "Seconds the oldest due PENDING send of a running broadcast has waited to be posted.",
            value=age,
        )
        channels = dict(
            Broadcast.objects.filter(status=BroadcastStatus.IN_PROGRESS)
            .values_list("channel_id", "channel__max_mps")
            .distinct()
        )
        rate = GaugeMetricFamily(
            "msg_channel_sends_per_second", "POSTs to Meta in the last full second.", labels=["channel"]
        )
        cap = GaugeMetricFamily("msg_channel_cap_sends_per_second", "The channel's max_mps.", labels=["channel"])
        ids = sorted(channels)
        try:
            posts = channel_posts_in_second(ids, math.floor(time.time()) - RATE_LAG_SECONDS)
        except RedisError as exc:
            logger.warning("metrics: channel rates not read (%s)", exc.__class__.__name__)
            posts = {}
        for channel_id in ids:
            if channel_id in posts:
                rate.add_metric([channel_id], float(posts[channel_id]))
            cap.add_metric([channel_id], float(channels[channel_id]))
        yield rate
        yield cap
