"""Fan-out: start (or continue) a broadcast by enqueueing chunk tasks over its due sends, and wake it later.

- ``broadcast_dispatch`` starts a due PENDING broadcast (lifecycle.broadcasts_start), enqueues up to
  DELIVERY_CHANNEL_PARALLELISM chunk tasks over the id range of its due, unleased sends, schedules a wake for the
  earliest retry due later, and finishes it when nothing is pending;
- ``broadcast_wake`` schedules one dispatch at a time (one wake chain per broadcast, kept in Redis);
- the fan-out mark tells the sweeper a recent dispatch's chunk tasks may still be waiting in the broker.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from functools import cache

from django.conf import settings
from django.db.models import Min
from django.utils import timezone

from broadcasts import lifecycle, queue
from broadcasts.delivery.claims import claim_size, sends_due
from broadcasts.models import Broadcast, BroadcastStatus, Send, SendStatus
from core.redis import redis_client

# The longest countdown one wake message carries: a longer wait (a retry's not_before, a marketing hold) is a chain
# of wakes, each re-dispatching and scheduling the next, so no message sits in the broker past its visibility timeout
# (CELERY_BROKER_TRANSPORT_OPTIONS, 1 h), after which Redis would hand it out again.
WAKE_MAX_SECONDS = 1800.0
# Seconds a fan-out is trusted to be in the broker before the sweeper fans the broadcast out again.
FANOUT_TRUST_FACTOR = 3


def broadcast_dispatch(*, broadcast_id: str, wake_at: float | None = None) -> int:
    """Start (or continue) a broadcast: enqueue chunk tasks for its due sends; returns how many. Safe to run twice.

    A scheduled broadcast is never started before ``scheduled_at``; a PAUSED one is left alone; a CANCELLED one
    has its leftover pending sends cancelled.
    """
    if wake_at is not None:
        _wake_clear(broadcast_id=broadcast_id, wake_at=wake_at)
    now = timezone.now()
    lifecycle.broadcasts_start(broadcast_ids=[broadcast_id], now=now)
    row = Broadcast.objects.filter(id=broadcast_id).values("status", "channel__max_mps").first()
    if row is None:
        return 0
    if row["status"] == BroadcastStatus.CANCELLED:
        lifecycle.sends_cancel_unleased(broadcast_id=broadcast_id)
        return 0
    if row["status"] != BroadcastStatus.IN_PROGRESS:
        return 0

    ids = list(sends_due(broadcast_id=broadcast_id, now=now).order_by("id").values_list("id", flat=True))
    # Each chunk task claims a batch and keeps claiming the next ones as it posts (a pump): so the channel never
    # idles between claims. As many pumps as may run on the channel at once; a spare one just finds no work.
    pumps = min(settings.DELIVERY_CHANNEL_PARALLELISM, -(-len(ids) // claim_size(max_mps=row["channel__max_mps"])))
    for _ in range(pumps):
        queue.chunk_enqueue(broadcast_id, ids[0], ids[-1])
    _fanout_mark(broadcast_id=broadcast_id)

    if not ids:
        later = (
            Send.objects.filter(broadcast_id=broadcast_id, status=SendStatus.PENDING)
            .aggregate(at=Min("next_attempt_at"))
            .get("at")
        )
        if not Send.objects.filter(broadcast_id=broadcast_id, status=SendStatus.PENDING).exists():
            lifecycle.broadcast_finalize(broadcast_id=broadcast_id)
        elif later is not None and later > now:
            broadcast_wake(broadcast_id=broadcast_id, at=later)
        # else: pending sends are leased by a running pump, which finishes the broadcast.
    else:
        later = (
            Send.objects.filter(broadcast_id=broadcast_id, status=SendStatus.PENDING, next_attempt_at__gt=now)
            .aggregate(at=Min("next_attempt_at"))
            .get("at")
        )
        if later is not None:
            broadcast_wake(broadcast_id=broadcast_id, at=later)
    return pumps


# Only an earlier (or no) pending wake lets a new one be scheduled: one wake chain per broadcast. The wake's time
# is Redis's clock (ms) plus the delay, so wakes asked by machines whose clocks differ compare exactly; returns it
# (0: an earlier wake is pending).
_WAKE_LUA = """
local t = redis.call('TIME')
local at = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[1])
local cur = redis.call('GET', KEYS[1])
if cur and tonumber(cur) <= at then return 0 end
redis.call('SET', KEYS[1], string.format('%d', at), 'PX', tonumber(ARGV[1]) + 10000)
return at
"""
_WAKE_CLEAR_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 0
"""


def broadcast_wake(*, broadcast_id: str, at: datetime) -> bool:
    """Dispatch the broadcast again at ``at`` (a retry or deferred send falls due) with a short countdown.

    The broker alone is never relied on: if this message is lost, the sweeper dispatches the broadcast anyway.
    """
    delay = min(WAKE_MAX_SECONDS, max(0.0, (at - timezone.now()).total_seconds()))
    at_ms = _registered(redis_client(), _WAKE_LUA)(keys=[_wake_key(broadcast_id)], args=[int(delay * 1000)])
    if not at_ms:
        return False
    wake_at = int(at_ms) / 1000.0
    queue.dispatch_at(broadcast_id, wake_at=wake_at, countdown=delay)
    return True


def _wake_clear(*, broadcast_id: str, wake_at: float) -> None:
    _registered(redis_client(), _WAKE_CLEAR_LUA)(keys=[_wake_key(broadcast_id)], args=[f"{round(wake_at * 1000):d}"])


def _wake_key(broadcast_id: str) -> str:
    return f"delivery:{{bc:{broadcast_id}}}:wake"


@cache
def _registered(client, source: str):
    return client.register_script(source)


def _fanout_mark(*, broadcast_id: str) -> None:
    ttl = int(settings.DELIVERY_SWEEP_INTERVAL * FANOUT_TRUST_FACTOR * 1000)
    redis_client().set(f"delivery:fanout:{broadcast_id}", "1", px=max(ttl, 1000))


def fanout_recent(*, broadcast_id: str) -> bool:
    """True while a recent dispatch's chunk tasks may still be waiting in the broker (the sweeper leaves it be)."""
    return bool(redis_client().exists(f"delivery:fanout:{broadcast_id}"))


def channel_others_dispatch(*, broadcast_id: str, channel_id: str) -> None:
    """Wake the channel's other running broadcasts at once (their pumps may be waiting with a countdown)."""
    others = list(
        Broadcast.objects.filter(channel_id=channel_id, status=BroadcastStatus.IN_PROGRESS)
        .exclude(id=broadcast_id)
        .values_list("id", flat=True)[:20]
    )
    for other in others:
        queue.dispatch_now(other)


def broadcasts_in_progress() -> Iterable[str]:
    """Ids of the running broadcasts (the sweeper dispatches those no recent fan-out covers)."""
    return Broadcast.objects.filter(status=BroadcastStatus.IN_PROGRESS).values_list("id", flat=True)
