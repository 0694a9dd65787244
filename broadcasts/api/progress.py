"""A broadcast's ``waiting`` and ``eta`` (docs/api.md), for its GET: why its pending sends wait and when the last
is expected to leave, given the channel's cap, the messaging limit and retries.

One aggregate over the broadcast's pending sends (selectors.broadcast_waiting) and, only when sends wait for the
messaging limit, one read of the organization's count in Redis (messaging_limit.room_free_in).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from redis.exceptions import RedisError

from broadcasts import selectors
from broadcasts.delivery import limiter
from broadcasts.models import Broadcast, BroadcastStatus
from broadcasts.rules import messaging_limit
from core.timefmt import iso_utc


def broadcast_progress(*, broadcast: Broadcast, now: datetime) -> dict[str, Any]:
    """``{"waiting": {...}, "eta": ISO 8601 | None}``: eta is null when nothing is pending, and while the broadcast
    is PAUSED (nothing leaves until it is resumed) or the count cannot be read (Redis away)."""
    waiting, retry_last = selectors.broadcast_waiting(broadcast=broadcast, now=now)
    pending = sum(waiting.values())
    if not pending or broadcast.status in (BroadcastStatus.PAUSED, BroadcastStatus.CANCELLED):
        return {"waiting": waiting, "eta": None}
    start_in = 0.0
    if waiting["schedule"] and broadcast.scheduled_at is not None:
        start_in = max(0.0, (broadcast.scheduled_at - now).total_seconds())
    limit_in = None
    if waiting["messaging_limit"]:
        try:
            limit_in = messaging_limit.room_free_in(
                organization_id=broadcast.organization_id, count=waiting["messaging_limit"], now=now
            )
        except RedisError:
            return {"waiting": waiting, "eta": None}
    seconds = messaging_limit.eta_seconds(
        throughput=waiting["throughput"] + waiting["schedule"],
        rate=limiter.effective_rate(broadcast.channel.max_mps),
        start_in=start_in,
        retry_in=max(0.0, (retry_last - now).total_seconds()) if retry_last is not None else None,
        limit_count=waiting["messaging_limit"],
        limit_in=limit_in,
    )
    return {"waiting": waiting, "eta": iso_utc(now + timedelta(seconds=seconds))}
