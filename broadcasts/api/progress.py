"""A broadcast's ``waiting`` and ``eta`` (docs/api.md), for its GET: why its pending sends wait and when the last
is expected to leave, given the channel's cap, the messaging limit, the send window and retries.

One aggregate over the broadcast's pending sends (selectors.broadcast_waiting; with a send window one more, by zone,
and the window's next opening computed once per zone), and, only when sends wait for the messaging limit, one read
of the organization's count in Redis (messaging_limit.room_free_in).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from redis.exceptions import RedisError

from broadcasts import selectors
from broadcasts.delivery import limiter
from broadcasts.models import Broadcast, BroadcastStatus
from broadcasts.rules import messaging_limit
from broadcasts.rules.send_windows import closed_zones_openings, window_eta_seconds
from core.timefmt import iso_utc


def broadcast_progress(*, broadcast: Broadcast, now: datetime) -> dict[str, Any]:
    """``{"waiting": {...}, "eta": ISO 8601 | None}``: eta is null when nothing is pending, and while the broadcast
    is PAUSED (nothing leaves until it is resumed) or the count cannot be read (Redis away)."""
    waiting, retry_last, by_zone = selectors.broadcast_waiting(broadcast=broadcast, now=now)
    openings = closed_zones_openings(broadcast.send_window, by_zone, now) if broadcast.send_window else []
    waiting["send_window"] = sum(n for _, n in openings)
    waiting["throughput"] -= waiting["send_window"]
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
    rate = limiter.effective_rate(broadcast.channel.max_mps)
    seconds = max(seconds, window_eta_seconds(openings=openings, rate=rate, now=now))
    return {"waiting": waiting, "eta": iso_utc(now + timedelta(seconds=seconds))}
