"""The messaging limit (docs/rules.md): at most N unique numbers per organization in any moving window.

Meta lets a business portfolio (our organization) start conversations with at most N unique users in a moving
MESSAGING_LIMIT_WINDOW_SECONDS (24 h), shared by all its numbers. A send *counts* when it is posted to a number not
counted in the window and whose customer-service window (the customer wrote to that channel less than
CUSTOMER_SERVICE_WINDOW_SECONDS ago) is not open; counted numbers and open-window numbers pass freely.

How it is kept:
- one Redis sorted set per organization (member = number, score = when it was counted, Redis TIME in ms), with
  every key of an organization under the hash tag ``{org:<id>}`` so each script runs on one Redis Cluster slot;
- ``admit`` is ONE Lua call per batch: drop what left the window, pass counted numbers (their entry refreshed to
  this send, so the ledger holds a number at least as long as Meta counts any conversation of it), count new ones
  while fewer than N are counted (``ZADD NX``: a send admitted twice counts once), and for the others say how long
  until the window frees room for them (when the oldest counted entries leave). Nothing is counted by a
  worker's clock; nothing at all happens in Redis for an unlimited organization;
- durability: the set is a cache of what PostgreSQL knows. A marker key says it was built; when it is missing
  (Redis flushed or restarted empty, the limit changed, or idle for two windows) the set is rebuilt from the
  organization's sends posted in the last window (``sent_at``) and those being posted right now (``posting_at``),
  before anything is admitted (but not the batch being admitted: it is marked posting just before the gates, and
  counted by the rebuild it would find itself counted already and pass over the limit). The rebuild over-counts
  (every posted send counts, open windows or not), never under-counts, so a Redis restart cannot let the service
  exceed the limit;
- each change of the limit (command, admin, Meta's webhooks) stamps ``messaging_limit_set_at``, which names
  fresh keys: the count starts from PostgreSQL again (sends made while the organization was unlimited included).

Customer-service windows are their own rule (rules/customer_windows.py); the limit's value, Meta's tier names and
its changes are rules/limit_tiers.py.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache

from django.conf import settings
from django.db import connection
from redis.exceptions import RedisError

from broadcasts.models import WaitReason
from broadcasts.rules.customer_windows import customer_windows_open
from core.redis import redis_client
from tokens.models import Organization

WAIT_REASON = WaitReason.MESSAGING_LIMIT
# An entry counts from its admission (Redis TIME), and Meta from when the POST reaches it: a POST leaves within
# claims.POST_PERMIT_SECONDS (0.3 s) of its send's marking, before the gate, and travels; this covers both.
POST_MARGIN_SECONDS = 2.0
# Numbers per rebuild call: a 100,000-number portfolio is rebuilt in 20 calls, none of them long.
REBUILD_CHUNK = 5000

# KEYS: counted set, built marker, waiters counter. ARGV: limit, window ms, marker ttl ms, numbers...
# Returns {-1} when the set must be rebuilt first, else one value per number: 0 admitted, else the wait in ms.
# The waiters counter numbers the sends told to wait in a burst (all workers), so their waits follow the order
# in which the counted entries leave instead of all waking when the oldest does (a hint only: it expires).
_ADMIT_LUA = """
if redis.call('EXISTS', KEYS[2]) == 0 then return {-1} end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local used = redis.call('ZCARD', KEYS[1])
local out = {}
local rejected = {}
for i = 4, #ARGV do
  local number = ARGV[i]
  if redis.call('ZSCORE', KEYS[1], number) then
    -- Counted already: passes, and its entry now runs from this send (GT: never earlier). The ledger then holds
    -- a number at least as long as Meta counts any conversation of it (one starts at a send we admitted).
    redis.call('ZADD', KEYS[1], 'GT', now, number)
    out[#out + 1] = 0
  elseif used < limit then
    redis.call('ZADD', KEYS[1], 'NX', now, number)
    used = used + 1
    out[#out + 1] = 0
  else
    out[#out + 1] = -1
    rejected[#rejected + 1] = #out
  end
end
if #rejected > 0 then
  local base = redis.call('INCRBY', KEYS[3], #rejected) - #rejected
  redis.call('PEXPIRE', KEYS[3], 2000)
  for k, position in ipairs(rejected) do
    -- Room for this one once (used - limit + 1 + its place among the waiters) of the oldest entries have left.
    local rank = used - limit + base + k - 1
    local rounds = 0
    if rank >= used then
      rounds = math.floor((rank - used) / limit) + 1
      rank = (rank - used) % limit
      if rank >= used then rank = used - 1 end
    end
    local entry = redis.call('ZRANGE', KEYS[1], rank, rank, 'WITHSCORES')
    local wait = window * (rounds + 1)
    if entry[2] then wait = tonumber(entry[2]) + window * (rounds + 1) - now + 1 end
    if wait < 1 then wait = 1 end
    out[position] = wait
  end
end
if used > 0 then redis.call('PEXPIRE', KEYS[1], window + 1000) end
redis.call('PEXPIRE', KEYS[2], tonumber(ARGV[3]))
return out
"""

# KEYS: counted set, built marker. ARGV: window ms, marker ttl ms, last chunk (0/1), then (number, age ms) pairs.
_REBUILD_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local window = tonumber(ARGV[1])
for i = 4, #ARGV, 2 do
  redis.call('ZADD', KEYS[1], 'NX', now - tonumber(ARGV[i + 1]), ARGV[i])
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
redis.call('PEXPIRE', KEYS[1], window + 1000)
if ARGV[3] == '1' then redis.call('SET', KEYS[2], '1', 'PX', tonumber(ARGV[2])) end
return 0
"""

# Read-only. KEYS: counted set, built marker. ARGV: window ms, rank (or -1), numbers...
# Returns {-1} when not built, else {used, numbers not counted, wait ms until `rank` + 1 entries have left (or -1)}.
_PEEK_LUA = """
if redis.call('EXISTS', KEYS[2]) == 0 then return {-1} end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local window = tonumber(ARGV[1])
local cutoff = now - window
local used = redis.call('ZCOUNT', KEYS[1], '(' .. cutoff, '+inf')
local fresh = 0
for i = 3, #ARGV do
  local score = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if not score or tonumber(score) <= cutoff then fresh = fresh + 1 end
end
local wait = -1
local rank = tonumber(ARGV[2])
if rank >= 0 and used > 0 then
  local r = rank
  if r >= used then r = used - 1 end
  local entry = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. cutoff, '+inf', 'WITHSCORES', 'LIMIT', r, 1)
  if entry[2] then wait = tonumber(entry[2]) + window - now end
  if wait < 0 then wait = 0 end
end
return {used, fresh, wait}
"""


@cache
def _script(source: str):
    return redis_client().register_script(source)


def _window_ms() -> int:
    """The window an entry stays counted: Meta's, plus the time from admission to Meta's receipt of the POST."""
    return max(1, int((settings.MESSAGING_LIMIT_WINDOW_SECONDS + POST_MARGIN_SECONDS) * 1000))


def _keys(organization_id: int, generation: int) -> list[str]:
    tag = f"{{org:{organization_id}}}"
    return [
        f"msglimit:{tag}:{generation}:counted",
        f"msglimit:{tag}:{generation}:built",
        f"msglimit:{tag}:{generation}:waiters",
    ]


@dataclass(frozen=True, slots=True)
class LimitState:
    """An organization's limit (None = unlimited) and the generation of its count (changes with the limit)."""

    limit: int | None
    generation: int


def limit_state(*, organization_id: int) -> LimitState:
    """One primary-key read: the organization's limit as it is now."""
    with connection.cursor() as cursor:
        cursor.execute(LIMIT_STATE_SQL, [organization_id])
        found = cursor.fetchone()
    return limit_state_of(found)


def limit_state_of(row: tuple | None) -> LimitState:
    """The state from LIMIT_STATE_SQL's row (None: no such organization, unlimited)."""
    if row is None or not row[0]:
        return LimitState(limit=None, generation=0)
    set_at = row[1]
    return LimitState(limit=int(row[0]), generation=int(set_at.timestamp() * 1000) if set_at else 0)


# An organization's limit and when it was set (parameter: its id); a fixed raw statement, read for every batch
# (also one part of the admission gates' one statement per batch, delivery/gate_facts.py).
LIMIT_STATE_SQL = f"SELECT messaging_limit, messaging_limit_set_at FROM {Organization._meta.db_table} WHERE id = %s"


# --- counting -----------------------------------------------------------------------------------------------


def _rebuild_rows(
    *, organization_id: int, now: datetime, batch_ids: list[int] | None = None
) -> list[tuple[str, float]]:
    """(number, age in seconds) of every number the organization posted to within the window, by PostgreSQL:
    sends with ``sent_at`` in the window (their latest, as the ledger keeps a number from its last send), and sends
    being posted now (``posting_at``, age 0) except ``batch_ids``, the batch being admitted (marked posting just
    before the gates: it is what the admission decides, not what was posted)."""
    cutoff = now - timedelta(seconds=settings.MESSAGING_LIMIT_WINDOW_SECONDS + POST_MARGIN_SECONDS)
    sql = """
        SELECT s."to", MAX(CASE WHEN s.sent_at >= %s THEN s.sent_at ELSE %s END)
        FROM broadcasts_send s
        WHERE s.broadcast_id IN (
            SELECT b.id FROM broadcasts_broadcast b
            WHERE b.organization_id = %s AND b.started_at IS NOT NULL
              AND (b.completed_at IS NULL OR b.completed_at >= %s)
        )
          AND (s.sent_at >= %s OR (s.status = 'PENDING' AND s.posting_at IS NOT NULL AND s.id <> ALL(%s::bigint[])))
        GROUP BY s."to"
    """
    with connection.cursor() as cursor:
        cursor.execute(sql, [cutoff, now, organization_id, cutoff, cutoff, list(batch_ids or ())])
        rows = cursor.fetchall()
    return [(number, max(0.0, (now - at).total_seconds())) for number, at in rows]


def _rebuild(*, organization_id: int, generation: int, now: datetime, batch_ids: list[int] | None) -> None:
    keys = _keys(organization_id, generation)[:2]
    rows = _rebuild_rows(organization_id=organization_id, now=now, batch_ids=batch_ids)
    window = _window_ms()
    chunks = [rows[i : i + REBUILD_CHUNK] for i in range(0, len(rows), REBUILD_CHUNK)] or [[]]
    for position, chunk in enumerate(chunks):
        args: list = [window, 2 * window, "1" if position == len(chunks) - 1 else "0"]
        for number, age in chunk:
            args += [number, int(age * 1000)]
        _script(_REBUILD_LUA)(keys=keys, args=args)


def admit(
    *,
    organization_id: int,
    channel_id: str,
    numbers: list[str],
    now: datetime,
    state: LimitState | None = None,
    batch_ids: list[int] | None = None,
) -> list[float] | None:
    """Decide a batch about to be posted: per number 0.0 (go: counted now, counted already, or its customer-service
    window is open) or the seconds until the window frees room for it. None when the organization is unlimited
    (no Redis call). One indexed query (customer windows) and one Lua call per batch (two when the count must be
    rebuilt first). Raises when Redis or the database is away: nothing is posted unchecked. ``state``: the limit as
    just read with the batch's other facts (else read here). ``batch_ids``: the ids of the sends of ``numbers`` when
    they are marked posting already (the engine's gate): a rebuild must not count them as posted."""
    if state is None:
        state = limit_state(organization_id=organization_id)
    if state.limit is None:
        return None
    if not numbers:
        return []
    open_windows = customer_windows_open(channel_id=channel_id, numbers=numbers, now=now)
    counted = [n for n in numbers if n not in open_windows]
    waits: dict[int, float] = {}
    if counted:
        keys = _keys(organization_id, state.generation)
        args = [state.limit, _window_ms(), 2 * _window_ms(), *counted]
        result = _script(_ADMIT_LUA)(keys=keys, args=args)
        if result and int(result[0]) == -1:
            _rebuild(organization_id=organization_id, generation=state.generation, now=now, batch_ids=batch_ids)
            result = _script(_ADMIT_LUA)(keys=keys, args=args)
            if result and int(result[0]) == -1:
                raise RuntimeError("messaging limit: the count could not be rebuilt")
        positions = [i for i, n in enumerate(numbers) if n not in open_windows]
        for position, ms in zip(positions, result, strict=True):
            if int(ms) > 0:
                waits[position] = int(ms) / 1000.0
    return [waits.get(i, 0.0) for i in range(len(numbers))]


def outlook(*, organization_id: int, channel_id: str, numbers: list[str], now: datetime) -> dict:
    """For a dry run: ``{"limit", "used", "would_wait"}``: the organization's limit (None = unlimited), the numbers
    counted in the window now, and how many of ``numbers`` would wait for the window to free room if posted now
    (distinct numbers, not counted yet, with no open customer-service window, beyond the room left). Changes
    nothing (when the count is not built in Redis it is read from PostgreSQL). Unlimited: used None, no Redis."""
    state = limit_state(organization_id=organization_id)
    if state.limit is None:
        return {"limit": None, "used": None, "would_wait": 0}
    distinct = list(dict.fromkeys(numbers))
    open_windows = customer_windows_open(channel_id=channel_id, numbers=distinct, now=now)
    candidates = [n for n in distinct if n not in open_windows]
    result = _script(_PEEK_LUA)(keys=_keys(organization_id, state.generation)[:2], args=[_window_ms(), -1, *candidates])
    if int(result[0]) != -1:
        used, fresh = int(result[0]), int(result[1])
    else:
        counted = {number for number, _ in _rebuild_rows(organization_id=organization_id, now=now)}
        used = len(counted)
        fresh = sum(1 for n in candidates if n not in counted)
    room = max(0, state.limit - used)
    return {"limit": state.limit, "used": used, "would_wait": max(0, fresh - room)}


def ledger_use(*, organization: Organization) -> tuple[int | None, int | None]:
    """For the admin overview: (the limit, None = unlimited; the numbers counted in the window now, None when the
    ledger is not built in Redis or Redis is away: the next admitted batch rebuilds it). ``organization`` as loaded
    by the caller (no statement); one read-only script; never the sends."""
    state = limit_state_of((organization.messaging_limit, organization.messaging_limit_set_at))
    if state.limit is None:
        return None, None
    try:
        result = _script(_PEEK_LUA)(keys=_keys(organization.id, state.generation)[:2], args=[_window_ms(), -1])
    except RedisError:
        return state.limit, None
    return state.limit, (int(result[0]) if int(result[0]) != -1 else None)


def room_free_in(*, organization_id: int, count: int, now: datetime) -> float | None:
    """Seconds until the window has freed room for ``count`` more numbers (for a broadcast's eta); None when the
    organization is unlimited. Past the entries counted now, each further full window frees ``limit`` more."""
    state = limit_state(organization_id=organization_id)
    if state.limit is None:
        return None
    if count <= 0:
        return 0.0
    window = settings.MESSAGING_LIMIT_WINDOW_SECONDS + POST_MARGIN_SECONDS
    used, leaves_in = _counted_leaving(organization_id=organization_id, state=state, count=count, now=now)
    rank = used - state.limit + count - 1  # this many + 1 of the oldest must leave
    if rank < 0:
        return 0.0
    if rank < used:
        return leaves_in(rank)
    # Beyond what is counted now: once the last of them leaves, each window admits `limit` more.
    last = leaves_in(used - 1) if used else 0.0
    return last + window * (math.ceil((rank - used + 1) / state.limit) - 1)


def _counted_leaving(*, organization_id: int, state: LimitState, count: int, now: datetime):
    """(numbers counted now, f(rank) = seconds until the rank-th oldest leaves the window)."""
    window = settings.MESSAGING_LIMIT_WINDOW_SECONDS + POST_MARGIN_SECONDS
    keys = _keys(organization_id, state.generation)[:2]
    result = _script(_PEEK_LUA)(keys=keys, args=[_window_ms(), -1])
    if int(result[0]) != -1:

        def from_redis(rank: int) -> float:
            peek = _script(_PEEK_LUA)(keys=keys, args=[_window_ms(), rank])
            return max(0.0, int(peek[2]) / 1000.0) if int(peek[0]) != -1 and int(peek[2]) >= 0 else window

        return int(result[0]), from_redis
    ages = sorted((age for _, age in _rebuild_rows(organization_id=organization_id, now=now)), reverse=True)
    return len(ages), lambda rank: max(0.0, window - ages[min(rank, len(ages) - 1)])


def eta_seconds(
    *, throughput: int, rate: float, start_in: float, retry_in: float | None, limit_count: int, limit_in: float | None
) -> float:
    """When the last pending send is expected to leave, in seconds from now: the channel's cap over what waits for
    throughput (from ``start_in``), the latest retry, and the sends waiting for the limit (when the window has
    freed room for all of them, then at the cap)."""
    rate = max(rate, 0.001)
    candidates = [start_in + throughput / rate]
    if retry_in is not None:
        candidates.append(retry_in)
    if limit_count:
        candidates.append((limit_in or 0.0) + limit_count / rate)
    return max(0.0, *candidates)
