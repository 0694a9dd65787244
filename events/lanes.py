"""Fair shares of the ``events`` queue's workers (docs/operations.md): one organization's slow or failing endpoints
never delay another organization's events.

A delivery task runs in a lane, and a lane holds at most so many worker processes at once, across every worker
machine (slots in Redis, each with a lease so a killed worker's slot frees itself):

- a healthy endpoint (no failure in a row) runs in its organization's lane, EVENTS_ORG_MAX_IN_FLIGHT slots;
- an endpoint that is failing runs in the one shared ``failing`` lane, EVENTS_FAILING_MAX_IN_FLIGHT slots, so
  retries of dead endpoints (10 s each when they hang) never take the workers the healthy ones need, and never
  count against their organization's healthy endpoints.

A task whose lane is full does not wait: it leaves its endpoint in the lane's waiting set and ends at once. Each
run that ends hands its slot on, by queueing waiting endpoints for the slots now free (the same script takes the
slot or joins the waiting set, and frees the slot and picks the next, so no wake-up is lost between them); the
beat sweeper wakes anything left behind by a killed worker.

One slot is a healthy endpoint's full speed: a run keeps POST_CONCURRENCY POSTs in flight as a window
(events/outbox.py), so a customer's slow answers delay their own events, not the run's others, and a run that
spends its time budget queues itself again at once. (An organization's throughput is one run's, not one per
worker process: raise EVENTS_ORG_MAX_IN_FLIGHT for an organization with many busy endpoints.)
"""

import logging
import time
import uuid
from dataclasses import dataclass

from django.conf import settings

from core.redis import redis_client
from events import outbox, queue
from events.models import WebhookEndpoint

logger = logging.getLogger(__name__)

FAILING_LANE = "failing"
# A run takes RUN_BUDGET_SECONDS and then its last batch (at most 4 rounds of 10 s); a slot outlives that, so only
# a killed worker's slot ever expires.
SLOT_LEASE_SECONDS = 90
WAITING_TTL_SECONDS = 600

# KEYS: the lane's slots (zset token -> lease end, ms), its waiting endpoints (set).
# ARGV: now ms, lease ms, slots, token, endpoint id, waiting TTL s. 1: the slot is taken; 0: the endpoint waits.
_ACQUIRE = """
redis.call('zremrangebyscore', KEYS[1], '-inf', ARGV[1])
if redis.call('zcard', KEYS[1]) < tonumber(ARGV[3]) then
  redis.call('zadd', KEYS[1], tonumber(ARGV[1]) + tonumber(ARGV[2]), ARGV[4])
  redis.call('pexpire', KEYS[1], ARGV[2])
  redis.call('srem', KEYS[2], ARGV[5])
  return 1
end
redis.call('sadd', KEYS[2], ARGV[5])
redis.call('expire', KEYS[2], ARGV[6])
return 0
"""
# KEYS as above. ARGV: token, slots, now ms. The waiting endpoints to queue now, one per free slot.
_RELEASE = """
redis.call('zrem', KEYS[1], ARGV[1])
redis.call('zremrangebyscore', KEYS[1], '-inf', ARGV[3])
local free = tonumber(ARGV[2]) - redis.call('zcard', KEYS[1])
if free <= 0 then return {} end
return redis.call('spop', KEYS[2], free)
"""


@dataclass(frozen=True)
class Lane:
    name: str
    slots: int

    def keys(self) -> list[str]:
        # One hash tag per lane: both keys in one Redis Cluster slot, as a script needs.
        return [f"events:lane:{{{self.name}}}:slots", f"events:lane:{{{self.name}}}:waiting"]


def endpoint_lane(*, endpoint: WebhookEndpoint) -> Lane:
    if endpoint.consecutive_failures > 0:
        return Lane(FAILING_LANE, max(1, int(settings.EVENTS_FAILING_MAX_IN_FLIGHT)))
    return Lane(f"org:{endpoint.organization_id}", max(1, int(settings.EVENTS_ORG_MAX_IN_FLIGHT)))


def _slot_take(*, lane: Lane, endpoint_id: str) -> str | None:
    """A slot's token, or None when the lane is full (the endpoint then waits in the lane's set)."""
    token = uuid.uuid4().hex
    taken = redis_client().eval(
        _ACQUIRE,
        2,
        *lane.keys(),
        int(time.time() * 1000),
        int(SLOT_LEASE_SECONDS * 1000),
        lane.slots,
        token,
        endpoint_id,
        WAITING_TTL_SECONDS,
    )
    return token if taken else None


def _slot_hand_on(*, lane: Lane, token: str) -> list[str]:
    waiting = redis_client().eval(_RELEASE, 2, *lane.keys(), token, lane.slots, int(time.time() * 1000))
    return [w.decode() if isinstance(w, bytes) else str(w) for w in waiting or []]


def endpoint_deliver_in_lane(*, endpoint_id: str) -> dict[str, int]:
    """Delivers the endpoint's due events if its lane has a free slot, else leaves it waiting for one."""
    endpoint = (
        WebhookEndpoint.objects.filter(id=endpoint_id, is_active=True, deleted_at__isnull=True)
        .only("id", "organization_id", "consecutive_failures")
        .first()
    )
    if endpoint is None:
        return {"delivered": 0, "failed_attempts": 0}
    lane = endpoint_lane(endpoint=endpoint)
    try:
        token = _slot_take(lane=lane, endpoint_id=endpoint_id)
    except Exception as exc:  # noqa: BLE001 - Redis down: deliver unshared rather than not at all
        logger.warning("events: lane %s unavailable, delivering %s without it (%s)", lane.name, endpoint_id, exc)
        return outbox.endpoint_deliver_due(endpoint_id=endpoint_id)
    if token is None:
        return {"delivered": 0, "failed_attempts": 0, "waiting": 1}
    try:
        stats = outbox.endpoint_deliver_due(endpoint_id=endpoint_id)
    finally:
        try:
            waiting = _slot_hand_on(lane=lane, token=token)
        except Exception as exc:  # noqa: BLE001 - the slot's lease ends it; the sweeper wakes the waiting
            logger.warning("events: could not free a slot of lane %s (%s)", lane.name, exc)
            waiting = []
        for waiting_id in waiting:
            queue.delivery_enqueue(waiting_id)
    if stats.get("budget_spent"):
        queue.delivery_enqueue(endpoint_id)  # more is due: continue in a fresh task, after the others
    return stats
