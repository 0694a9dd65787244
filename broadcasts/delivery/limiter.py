"""Per-channel throughput cap and same-number spacing, shared by every worker process and machine.

Infrastructure under the pump (Redis keys and Lua, no rows): pacing.py and run.py use it.

The cap is a GCRA schedule kept in ONE Redis key per channel: the "theoretical arrival time" (TAT) of the next
free slot. One Lua call reserves up to k consecutive slots, spaced 1/rate apart, and returns when each may go,
so 1000 sends/s costs ~10 round trips, not 1000. The schedule starts at max(TAT, now): time not used is lost,
so a worker that stalled never bursts to catch up (burst capacity 1), and any one-second window holds at most
rate * 1 s + 1 slots; pacing at DELIVERY_RATE_HEADROOM * max_mps keeps that below max_mps with room for jitter.

Redis is the only place these live: while it is away nothing is reserved, so nothing is sent unpaced (the
callers wait and try again). A Redis emptied under a running channel (FLUSHALL, a restart without persistence) loses
the schedule while slots granted from it (up to HORIZON_SECONDS + LEAD_SECONDS ahead) are still to be fired; a fresh
schedule starting at "now" would overlap them and put up to rate * horizon extra sends into one second. So each
channel also keeps a long-lived "epoch" key: a schedule missing while its epoch key is there is only an idle channel
(it starts at once); both missing means Redis forgot, and the new schedule starts one interval past the furthest
slot granted before (a channel's very first send, or its first after 30 days idle, waits that lead + horizon +
interval too: ~0.17 s at 20/s, ~1.15 s at 1/s). That one grant reaches at most 2 * (lead + horizon) ahead, within
the posting permit.

One clock: every time these scripts compare (the schedule, the running places' expiries) is Redis's own
(`redis.call('TIME')` inside the script), never a worker's: a machine whose clock is off still paces exactly with
the others. A grant comes back as offsets from Redis's time at the call, mapped onto this process's monotonic
clock at the call's return (so a slot is never fired before its time on Redis's clock). Scripts read TIME before
they write, which Redis allows since 5 with effect replication (the default).

Many machines: every key of one channel carries the hash tag ``{ch:<channel id>}``, so a multi-key script (the
number holds) lives in one slot of a Redis Cluster (LIMITER_REDIS_URL, see core/redis.py).
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from functools import cache

from django.conf import settings

from core.redis import redis_client

# Reserve at most this far ahead: a worker never holds slots it may not use for long (pause, cancel, stop),
# and concurrent workers interleave in ~horizon-sized turns.
HORIZON_SECONDS = 0.1
# Slots start at least this far in the future, leaving time to claim dedup keys and mark sends as posting,
# so the first slot of a grant is not late (lateness followed by on-time slots is what bunches a window).
LEAD_SECONDS = 0.02
# An idle channel's key disappears (its TAT is in the past anyway, and max(TAT, now) ignores it).
_KEY_TTL_MS = 60_000
# The epoch key outlives the schedule by far: set again whenever a schedule starts, so only an emptied Redis (or a
# channel idle this long) finds both missing.
_EPOCH_TTL_MS = 30 * 86_400_000

_RESERVE_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local want = tonumber(ARGV[2])
local horizon = tonumber(ARGV[3])
local lead = tonumber(ARGV[4])
local tat = tonumber(redis.call('GET', KEYS[1]) or '-1')
local reach = now + lead + horizon
local forgotten = false
if tat < 0 then
  tat = 0
  if redis.call('EXISTS', KEYS[2]) == 0 then
    -- Redis forgot the schedule: slots granted before reach up to now + lead + horizon, so the new one starts an
    -- interval after that; what can go by then is granted now (a slow channel comes back at its start).
    forgotten = true
    tat = reach + interval
    reach = reach + lead + horizon
  end
  redis.call('SET', KEYS[2], '1', 'PX', tonumber(ARGV[6]))
end
local start = math.max(tat, now + lead)
local n = math.floor((reach - start) / interval) + 1
if n > want then n = want end
if n <= 0 then
  if forgotten then
    -- Kept even with nothing granted: the next caller finds the epoch key and must not start at "now".
    redis.call('SET', KEYS[1], string.format('%d', start), 'PX', tonumber(ARGV[5]))
  end
  return {0, start - now, 0}
end
redis.call('SET', KEYS[1], string.format('%d', start + n * interval), 'PX', tonumber(ARGV[5]))
return {n, start - now, 0}
"""

# SET NX per (channel, number) for each send about to go; for the busy ones, how long until the key expires.
_CLAIM_NUMBERS_LUA = """
local out = {}
for i, key in ipairs(KEYS) do
  if redis.call('SET', key, ARGV[i + 1], 'NX', 'PX', tonumber(ARGV[1])) then
    out[i] = 0
  else
    local ttl = redis.call('PTTL', key)
    if ttl < 1 then ttl = 1 end
    out[i] = ttl
  end
end
return out
"""

_RELEASE_NUMBER_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 0
"""

# At most ARGV[1] holders; a holder that died disappears when its expiry (score, Redis's clock in ms) passes.
_ACQUIRE_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local hold = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZSCORE', KEYS[1], ARGV[2]) == false and redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then
  return 0
end
redis.call('ZADD', KEYS[1], now + hold, ARGV[2])
redis.call('PEXPIRE', KEYS[1], hold + 1000)
return 1
"""

_TAKEN_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
return redis.call('ZCOUNT', KEYS[1], '(' .. now, '+inf')
"""


@dataclass(frozen=True, slots=True)
class Grant:
    """`count` slots; slot i may go at `first_at + i * interval` (time.monotonic() clock of this process)."""

    count: int
    first_at: float
    interval: float

    def slot_times(self) -> list[float]:
        return [self.first_at + i * self.interval for i in range(self.count)]


@cache
def _registered(client, source: str):
    return client.register_script(source)


def _script(source: str):
    # Per client (LIMITER_REDIS_URL may change in tests); a Script loads itself again on NOSCRIPT (a restarted or
    # failed-over Redis), on whichever cluster node owns the keys.
    return _registered(redis_client(), source)


def channel_key(channel_id: str, part: str) -> str:
    """A channel's engine key: every key of one channel shares the hash tag ``{ch:<id>}`` (one cluster slot)."""
    return f"delivery:{{ch:{channel_id}}}:{part}"


def window_budget(max_mps: int) -> int:
    """POSTs one pump lets out in any second of its own clock: the cap less DELIVERY_WINDOW_MARGIN, the room for
    what the way to Meta bunches; in whole sends at least 2 fewer above 10/s, 1 fewer above 2/s, none below."""
    floor = 2 if max_mps > 10 else 1 if max_mps > 2 else 0
    margin = max(floor, math.ceil(max_mps * settings.DELIVERY_WINDOW_MARGIN)) if floor else 0
    return max(1, max_mps - margin)


def effective_rate(max_mps: int) -> float:
    """Sends per second actually scheduled for a channel capped at `max_mps`: DELIVERY_RATE_HEADROOM of it, and
    never above the window budget (for small caps, where the margin's whole sends weigh more)."""
    return max(0.1, min(max_mps * settings.DELIVERY_RATE_HEADROOM, window_budget(max_mps)))


def channel_reserve(*, channel_id: str, max_mps: int, want: int) -> Grant:
    """Reserve up to `want` consecutive send slots on the channel; count 0 means none within the horizon yet
    (then `first_at` says when the next slot starts)."""
    interval = 1.0 / effective_rate(max_mps)
    count, first_us, _ = _script(_RESERVE_LUA)(
        keys=[channel_key(channel_id, "rate"), channel_key(channel_id, "epoch")],
        args=[
            int(interval * 1e6),
            max(1, want),
            int(HORIZON_SECONDS * 1e6),
            int(LEAD_SECONDS * 1e6),
            _KEY_TTL_MS,
            _EPOCH_TTL_MS,
        ],
    )
    # Offsets from Redis's clock at the call, mapped onto this process's monotonic clock when the answer is
    # here (the script ran before that): never earlier than Redis's schedule, late by at most the round trip.
    return Grant(count=int(count), first_at=time.monotonic() + int(first_us) / 1e6, interval=interval)


def numbers_claim(
    *, channel_id: str, numbers: list[str], hold_seconds: float, tokens: list[str] | None = None
) -> list[float]:
    """Claim "about to send to this number on this channel" for `hold_seconds`; per number 0.0 when claimed,
    else the seconds until the earlier claim expires (that send is deferred, not dropped). `tokens` (e.g. send
    ids) identify the holder for numbers_release."""
    if not numbers:
        return []
    keys = [channel_key(channel_id, f"number:{number}") for number in numbers]
    values = tokens or ["1"] * len(numbers)
    waits = _script(_CLAIM_NUMBERS_LUA)(keys=keys, args=[int(hold_seconds * 1000), *values])
    return [int(ms) / 1000.0 for ms in waits]


def numbers_release(*, channel_id: str, number: str, token: str) -> None:
    """Give a number back early when Meta certainly did not take the message (an error answer): the pair rate
    limit counts accepted messages only, so a retry after a 500 need not wait 6 s. Only our own hold is removed."""
    _script(_RELEASE_NUMBER_LUA)(keys=[channel_key(channel_id, f"number:{number}")], args=[token])


def channel_slot_acquire(*, channel_id: str, holder: str, limit: int, hold_seconds: float) -> bool:
    """Take one of `limit` places to run a pump on the channel (held until released or `hold_seconds` on Redis's
    clock; a holder that asks again renews its place)."""
    return bool(
        _script(_ACQUIRE_LUA)(keys=[channel_key(channel_id, "running")], args=[limit, holder, int(hold_seconds * 1000)])
    )


def channel_slots_taken(*, channel_id: str) -> int:
    """How many live holders the channel's running places have."""
    return int(_script(_TAKEN_LUA)(keys=[channel_key(channel_id, "running")], args=[]))


def channels_slots_taken(*, channel_ids: list[str]) -> dict[str, int]:
    """``channel_slots_taken`` of each channel, in one round trip (a pipeline: on a Redis Cluster, one per node)."""
    if not channel_ids:
        return {}
    script = _script(_TAKEN_LUA)
    pipe = redis_client().pipeline(transaction=False)
    for channel_id in channel_ids:
        script(keys=[channel_key(channel_id, "running")], args=[], client=pipe)
    return {channel_id: int(taken) for channel_id, taken in zip(channel_ids, pipe.execute(), strict=True)}


def channel_slot_release(*, channel_id: str, holder: str) -> None:
    """Give the place back; with Redis away it expires by itself (``hold_seconds``)."""
    from redis.exceptions import RedisError

    try:
        redis_client().zrem(channel_key(channel_id, "running"), holder)
    except RedisError:
        pass


def pid_holder() -> str:
    return f"{os.getpid()}:{time.monotonic_ns()}"
