"""The delivery engine: fan a broadcast out to the workers and post its sends at the channel's speed.

The database is the truth; the broker only wakes workers. A broadcast moves like this:

1. ``broadcast_dispatch`` marks it IN_PROGRESS (once, conditionally) and enqueues chunk tasks over id ranges of
   its due, unleased PENDING sends; it also schedules a wake for the earliest retry due later.
2. ``send_chunk_deliver`` CLAIMS the chunk's sends with one conditional UPDATE (PENDING, due, no live lease ->
   lease, attempts + 1), so a chunk that runs twice does nothing the second time; posts them concurrently on an
   asyncio loop within the channel's cap (broadcasts/ratelimit.py); and records outcomes with a bulk UPDATE
   every ~0.5 s (and at the end), checking between batches whether the broadcast was paused or cancelled.
3. When nothing is pending, the broadcast becomes COMPLETED (or FAILED: no send ever accepted), exactly once.

Lost messages, killed workers and an emptied Redis are recovered by the beat sweeper (broadcasts/recovery.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVar

import orjson
from django import db
from django.conf import settings
from django.db import close_old_connections, connection, transaction
from django.db.models import F, Min, Q
from django.utils import timezone
from redis.exceptions import RedisError

from broadcasts import ratelimit
from broadcasts.models import Broadcast, BroadcastStatus, Send, SendStatus
from core.errors import ConflictError
from events.publisher import broadcast_event_publish, message_events_publish
from whatsapp.client import GraphClient, SendResult
from whatsapp.errors import ErrorClass
from whatsapp.payload import MissingVariablesError, TemplateMessageBuilder

logger = logging.getLogger(__name__)
T = TypeVar("T")

# Outcomes are written at least this often while a chunk runs, so a webhook for a fresh wamid finds its send
# and a killed worker loses at most ~0.5 s of recorded work; the broadcast status is read at the same beat,
# which is how a pause or cancel stops further sends within 2 s.
CHECK_INTERVAL_SECONDS = 0.5
# A chunk stops taking new slots after this share of its lease, leaving time for the last answers (read
# timeout) and the final UPDATE before the task's time limit (lease - 5 s) and the lease itself.
POSTING_SHARE_OF_LEASE = 1 / 3
# A chunk that finds its channel already served by DELIVERY_CHANNEL_PARALLELISM chunks comes back after this.
CHANNEL_BUSY_RETRY_SECONDS = 1.0
# A slot missed by more than this is given up and its send re-planned, so a stalled process does not drift far
# into slots another process may hold (one process never fires two POSTs closer than one interval anyway).
LATE_TOLERANCE_SECONDS = 0.025
# The longest either loop of a chunk sleeps: bounds how fast it notices a stop or requeued sends.
MAX_BOOKKEEPING_SLEEP_SECONDS = 0.05
# No new claims this close to the posting deadline: the claimed sends would only be handed back.
REFILL_STOP_SECONDS = 0.5
# Seconds a fan-out is trusted to be in the broker before the sweeper fans the broadcast out again.
FANOUT_TRUST_FACTOR = 3


# --- small helpers ---------------------------------------------------------------------------------------


def chunk_size(*, max_mps: int) -> int:
    """Sends per chunk task: ~DELIVERY_CHUNK_SECONDS of work while the channel's chunks share its cap, between
    10 and DELIVERY_CHUNK_MAX."""
    share = max_mps * settings.DELIVERY_CHUNK_SECONDS / max(1, settings.DELIVERY_CHANNEL_PARALLELISM)
    return max(10, min(settings.DELIVERY_CHUNK_MAX, round(share)))


def retry_delay(*, attempts: int) -> float:
    """Exponential backoff with +-25 % jitter, capped: base * 2^(attempts-1)."""
    base = settings.DELIVERY_RETRY_BASE_SECONDS * (2 ** max(0, attempts - 1))
    return min(settings.DELIVERY_RETRY_MAX_SECONDS, base * random.uniform(0.75, 1.25))


def _lease_seconds() -> float:
    return settings.DELIVERY_LEASE_SECONDS


def _is_postgres() -> bool:
    return connection.vendor == "postgresql"


def _dt_param(value: datetime | None) -> Any:
    return connection.ops.adapt_datetimefield_value(value) if value is not None else None


# --- fan-out -----------------------------------------------------------------------------------------------


def broadcast_dispatch(*, broadcast_id: str, wake_at: float | None = None) -> int:
    """Start (or continue) a broadcast: enqueue chunks for its due sends; returns how many. Safe to run twice.

    A scheduled broadcast is never started before ``scheduled_at``; a PAUSED one is left alone; a CANCELLED one
    has its leftover pending sends cancelled.
    """
    from broadcasts.tasks import send_chunk_task

    if wake_at is not None:
        _wake_clear(broadcast_id=broadcast_id, wake_at=wake_at)
    now = timezone.now()
    # PENDING -> IN_PROGRESS exactly once, and only when due (the UPDATE's WHERE is the guard).
    Broadcast.objects.filter(id=broadcast_id, status=BroadcastStatus.PENDING).filter(
        Q(scheduled_at__isnull=True) | Q(scheduled_at__lte=now)
    ).update(status=BroadcastStatus.IN_PROGRESS, started_at=now, updated_at=now)
    row = Broadcast.objects.filter(id=broadcast_id).values("status", "channel__max_mps").first()
    if row is None:
        return 0
    if row["status"] == BroadcastStatus.CANCELLED:
        sends_cancel_unleased(broadcast_id=broadcast_id)
        return 0
    if row["status"] != BroadcastStatus.IN_PROGRESS:
        return 0

    ids = list(_due_sends(broadcast_id=broadcast_id, now=now).order_by("id").values_list("id", flat=True))
    # Each chunk task claims a batch and keeps claiming the next ones as it posts (a pump): so the channel never
    # idles between chunks. As many pumps as may run on the channel at once; a spare one just finds no work.
    pumps = min(settings.DELIVERY_CHANNEL_PARALLELISM, -(-len(ids) // chunk_size(max_mps=row["channel__max_mps"])))
    for _ in range(pumps):
        send_chunk_task.delay(broadcast_id, ids[0], ids[-1])
    _fanout_mark(broadcast_id=broadcast_id)

    if not ids:
        later = (
            Send.objects.filter(broadcast_id=broadcast_id, status=SendStatus.PENDING)
            .aggregate(at=Min("next_attempt_at"))
            .get("at")
        )
        if not Send.objects.filter(broadcast_id=broadcast_id, status=SendStatus.PENDING).exists():
            broadcast_finalize(broadcast_id=broadcast_id)
        elif later is not None and later > now:
            broadcast_wake(broadcast_id=broadcast_id, at=later)
        # else: pending sends are leased by a running chunk, which finishes the broadcast.
    else:
        later = (
            Send.objects.filter(broadcast_id=broadcast_id, status=SendStatus.PENDING, next_attempt_at__gt=now)
            .aggregate(at=Min("next_attempt_at"))
            .get("at")
        )
        if later is not None:
            broadcast_wake(broadcast_id=broadcast_id, at=later)
    return pumps


def _due_sends(*, broadcast_id: str, now: datetime):
    return Send.objects.filter(broadcast_id=broadcast_id, status=SendStatus.PENDING).filter(
        Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now),
        # An expired lease is the sweeper's to take back first: it decides whether an unknown outcome is counted.
        lease_expires_at__isnull=True,
    )


def broadcast_finalize(*, broadcast_id: str) -> str | None:
    """IN_PROGRESS -> COMPLETED (or FAILED when Meta accepted no send) once nothing is pending; exactly once,
    by a conditional UPDATE. Returns the new status, or None when it was not (or no longer) to be finished."""
    if Send.objects.filter(broadcast_id=broadcast_id, status=SendStatus.PENDING).exists():
        return None
    accepted = Send.objects.filter(broadcast_id=broadcast_id, message_id__isnull=False).exists()
    status = BroadcastStatus.COMPLETED if accepted else BroadcastStatus.FAILED
    now = timezone.now()
    updated = Broadcast.objects.filter(id=broadcast_id, status=BroadcastStatus.IN_PROGRESS).update(
        status=status, completed_at=now, updated_at=now
    )
    if not updated:
        return None
    broadcast_event_publish(broadcast_id=broadcast_id, event_type="broadcast.completed")
    return status


def sends_cancel_unleased(*, broadcast_id: str) -> int:
    """A CANCELLED broadcast's pending sends that no live worker holds become CANCELLED, never sent."""
    now = timezone.now()
    return (
        Send.objects.filter(broadcast_id=broadcast_id, status=SendStatus.PENDING)
        .filter(Q(lease_expires_at__isnull=True) | Q(lease_expires_at__lt=now))
        .update(
            status=SendStatus.CANCELLED, next_attempt_at=None, lease_expires_at=None, posting_at=None, updated_at=now
        )
    )


# Only an earlier (or no) pending wake lets a new one be scheduled: one wake chain per broadcast.
_WAKE_LUA = """
local cur = redis.call('GET', KEYS[1])
if cur and tonumber(cur) <= tonumber(ARGV[1]) then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', tonumber(ARGV[2]))
return 1
"""
_WAKE_CLEAR_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 0
"""


def broadcast_wake(*, broadcast_id: str, at: datetime) -> bool:
    """Dispatch the broadcast again at ``at`` (a retry or deferred send falls due) with a short countdown.

    The broker alone is never relied on: if this message is lost, the sweeper dispatches the broadcast anyway.
    """
    from broadcasts.tasks import broadcast_dispatch_task

    delay = max(0.0, (at - timezone.now()).total_seconds())
    wake_at = round(time.time() + delay, 3)
    client = ratelimit.redis_client()
    if client is not None:
        script = client.register_script(_WAKE_LUA)
        if not script(keys=[f"delivery:wake:{broadcast_id}"], args=[repr(wake_at), int(delay * 1000) + 10_000]):
            return False
    broadcast_dispatch_task.apply_async(args=[broadcast_id], kwargs={"wake_at": wake_at}, countdown=delay)
    return True


def _wake_clear(*, broadcast_id: str, wake_at: float) -> None:
    client = ratelimit.redis_client()
    if client is not None:
        client.register_script(_WAKE_CLEAR_LUA)(keys=[f"delivery:wake:{broadcast_id}"], args=[repr(wake_at)])


def _fanout_mark(*, broadcast_id: str) -> None:
    client = ratelimit.redis_client()
    if client is not None:
        ttl = int(settings.DELIVERY_SWEEP_INTERVAL * FANOUT_TRUST_FACTOR * 1000)
        client.set(f"delivery:fanout:{broadcast_id}", "1", px=max(ttl, 1000))


def fanout_recent(*, broadcast_id: str) -> bool:
    """True while a recent dispatch's chunks may still be waiting in the broker (the sweeper leaves it be)."""
    client = ratelimit.redis_client()
    return bool(client is not None and client.exists(f"delivery:fanout:{broadcast_id}"))


# --- one chunk ---------------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Claimed:
    id: int
    index: int
    to: str
    variables: dict
    attempts: int


@dataclass(slots=True)
class _Row:
    """One send's new state for the bulk UPDATE; None in an error/message field keeps what is stored."""

    id: int
    status: str
    attempts_delta: int = 0
    next_attempt_at: datetime | None = None
    unknown_inc: int = 0
    message_id: str | None = None
    error_code: str | None = None
    error_title: str | None = None
    error_message: str | None = None
    error_retryable: bool | None = None
    sent_at: datetime | None = None
    failed_at: datetime | None = None


@dataclass
class ChunkReport:
    """What one chunk run did (for logs, tests and the benchmark)."""

    claimed: int = 0
    posted: int = 0
    sent: int = 0
    failed: int = 0
    retried: int = 0
    deferred: int = 0
    released: int = 0
    cancelled: int = 0
    unknown: int = 0
    late: int = 0
    stop: str | None = None
    channel_busy: bool = False
    handed_off: bool = False
    wake_at: datetime | None = None
    rows: list[_Row] = field(default_factory=list, repr=False)


def _claim(*, broadcast_id: str, first_id: int, last_id: int, now: datetime, limit: int) -> list[_Claimed]:
    """Take up to `limit` of the range's due sends for this worker: lease + attempt, in ONE conditional
    UPDATE ... RETURNING (SKIP LOCKED: concurrent claimers take disjoint sends, never wait for each other)."""
    lease = now + timedelta(seconds=_lease_seconds())
    lock = "FOR UPDATE SKIP LOCKED" if _is_postgres() else ""
    sql = f"""
        UPDATE broadcasts_send SET lease_expires_at = %s, attempts = attempts + 1, posting_at = NULL, updated_at = %s
        WHERE id IN (
            SELECT s.id FROM broadcasts_send s
            WHERE s.broadcast_id = %s AND s.id BETWEEN %s AND %s AND s.status = 'PENDING'
              AND (s.next_attempt_at IS NULL OR s.next_attempt_at <= %s)
              AND s.lease_expires_at IS NULL
              AND EXISTS (SELECT 1 FROM broadcasts_broadcast b WHERE b.id = s.broadcast_id AND b.status = 'IN_PROGRESS')
            ORDER BY s.id LIMIT %s {lock}
        )
        RETURNING id, "index", "to", variables, attempts
    """
    n = _dt_param(now)
    with connection.cursor() as cursor:
        cursor.execute(sql, [_dt_param(lease), n, broadcast_id, first_id, last_id, n, limit])
        rows = cursor.fetchall()
    claimed = []
    for send_id, index, to, variables, attempts in rows:
        if isinstance(variables, str | bytes):
            variables = orjson.loads(variables)
        claimed.append(_Claimed(id=send_id, index=index, to=to, variables=variables or {}, attempts=attempts))
    claimed.sort(key=lambda c: c.id)
    return claimed


def _mark_posting(ids: list[int]) -> None:
    """The POSTs for these sends may leave from now on (see Send.posting_at)."""
    if ids:
        Send.objects.filter(id__in=ids, status=SendStatus.PENDING).update(posting_at=timezone.now())


_PG_RECORD_SQL = """
UPDATE broadcasts_send AS s SET
    status = v.status,
    attempts = GREATEST(0, s.attempts + v.attempts_delta),
    next_attempt_at = v.next_attempt_at,
    lease_expires_at = NULL,
    posting_at = NULL,
    unknown_outcomes = s.unknown_outcomes + v.unknown_inc,
    message_id = COALESCE(v.message_id, s.message_id),
    error_code = COALESCE(v.error_code, s.error_code),
    error_title = COALESCE(v.error_title, s.error_title),
    error_message = COALESCE(v.error_message, s.error_message),
    error_retryable = CASE WHEN v.error_code IS NULL THEN s.error_retryable ELSE v.error_retryable END,
    sent_at = COALESCE(v.sent_at, s.sent_at),
    failed_at = COALESCE(v.failed_at, s.failed_at),
    updated_at = %s
FROM (VALUES {values}) AS v(id, status, attempts_delta, next_attempt_at, unknown_inc, message_id, error_code,
                            error_title, error_message, error_retryable, sent_at, failed_at)
WHERE s.id = v.id AND s.status = 'PENDING'
RETURNING s.id, s.status
"""
_PG_VALUE = (
    "(%s::bigint, %s::varchar, %s::int, %s::timestamptz, %s::int, %s::varchar, %s::varchar, %s::varchar, %s::text,"
    " %s::boolean, %s::timestamptz, %s::timestamptz)"
)


def sends_record(*, rows: list[_Row]) -> dict[str, list[int]]:
    """Write outcomes for leased sends with ONE UPDATE (PostgreSQL) and publish message events after it.

    Only PENDING rows are touched: a send is final once, whatever runs twice. Returns ids per new status.
    """
    if not rows:
        return {}
    now = timezone.now()
    if _is_postgres():
        params: list[Any] = [now]
        for r in rows:
            params += [
                r.id,
                r.status,
                r.attempts_delta,
                r.next_attempt_at,
                r.unknown_inc,
                r.message_id,
                r.error_code,
                r.error_title,
                r.error_message,
                r.error_retryable,
                r.sent_at,
                r.failed_at,
            ]
        sql = _PG_RECORD_SQL.format(values=", ".join([_PG_VALUE] * len(rows)))
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            written = cursor.fetchall()
    else:
        written = []
        # Demo database (SQLite): one UPDATE per send is fine at the demo's rate.
        with transaction.atomic():
            for r in rows:
                changes: dict[str, Any] = {
                    "status": r.status,
                    "attempts": F("attempts") + r.attempts_delta,
                    "next_attempt_at": r.next_attempt_at,
                    "lease_expires_at": None,
                    "posting_at": None,
                    "unknown_outcomes": F("unknown_outcomes") + r.unknown_inc,
                    "updated_at": now,
                }
                for name in ("message_id", "sent_at", "failed_at"):
                    if getattr(r, name) is not None:
                        changes[name] = getattr(r, name)
                if r.error_code is not None:
                    changes.update(
                        error_code=r.error_code,
                        error_title=r.error_title or "",
                        error_message=r.error_message or "",
                        error_retryable=r.error_retryable,
                    )
                if Send.objects.filter(id=r.id, status=SendStatus.PENDING).update(**changes):
                    written.append((r.id, r.status))
    by_status: dict[str, list[int]] = {}
    for send_id, status in written:
        by_status.setdefault(status, []).append(send_id)
    for status in (SendStatus.SENT, SendStatus.FAILED):
        if by_status.get(status):
            message_events_publish(send_ids=by_status[status], status=str(status))
    return by_status


def _outcome_row(*, send: _Claimed, result: SendResult, now: datetime, cancelled: bool) -> _Row:
    """Map one POST's result onto the send (attempts were already counted by the claim)."""
    if result.ok:
        return _Row(
            id=send.id,
            status=SendStatus.SENT,
            message_id=result.message_id,
            sent_at=now,
            error_code="",
            error_title="",
            error_message="",
            error_retryable=None,
        )
    error = result.error
    assert error is not None
    if error.code == "missing_variables":
        # Never POSTed: the claim's attempt is given back.
        return _Row(
            id=send.id,
            status=SendStatus.FAILED,
            attempts_delta=-1,
            failed_at=now,
            error_code=error.code,
            error_title=error.title,
            error_message=error.message,
            error_retryable=False,
        )
    fields = {
        "error_code": error.code[:64],
        "error_title": error.title[:255],
        "error_message": error.message,
        "error_retryable": error.retryable,
        "unknown_inc": 1 if result.unknown else 0,
    }
    if error.error_class is ErrorClass.ACCOUNT:
        # Counted (attempts = POSTs made), not failed: the send waits for resume, its error shown meanwhile.
        return _Row(id=send.id, status=SendStatus.PENDING, **fields)
    if error.error_class is ErrorClass.TRANSIENT and send.attempts < settings.DELIVERY_MAX_ATTEMPTS:
        if cancelled:
            return _Row(id=send.id, status=SendStatus.CANCELLED, **fields)
        at = now + timedelta(seconds=retry_delay(attempts=send.attempts))
        return _Row(id=send.id, status=SendStatus.PENDING, next_attempt_at=at, **fields)
    return _Row(id=send.id, status=SendStatus.FAILED, failed_at=now, **fields)


# --- the per-process asyncio runtime ----------------------------------------------------------------------


class _Runtime:
    """One event loop, one pooled Graph client and one database thread per worker process (made after fork)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.client: GraphClient | None = None
        self.client_key: tuple | None = None
        # Database work off the event loop, so POSTs keep their slots while an UPDATE runs.
        self.db = ThreadPoolExecutor(max_workers=1, thread_name_prefix="delivery-db")

    def graph_client(self) -> GraphClient:
        key = (
            settings.WHATSAPP_GRAPH_URL,
            settings.DELIVERY_CONNECT_TIMEOUT_SECONDS,
            settings.DELIVERY_READ_TIMEOUT_SECONDS,
            settings.DELIVERY_MAX_IN_FLIGHT,
        )
        if self.client is None or self.client.closed or key != self.client_key:
            if self.client is not None and not self.client.closed:
                self.loop.run_until_complete(self.client.close())

            async def make() -> GraphClient:
                return GraphClient(base_url=key[0], connect_timeout=key[1], read_timeout=key[2], max_connections=key[3])

            self.client = self.loop.run_until_complete(make())
            self.client_key = key
        return self.client


_runtime: _Runtime | None = None
_runtime_pid: int | None = None
_runtime_lock = threading.Lock()


def _get_runtime() -> _Runtime:
    global _runtime, _runtime_pid
    import os

    with _runtime_lock:
        if _runtime is None or _runtime_pid != os.getpid():
            _runtime = _Runtime()
            _runtime_pid = os.getpid()
        return _runtime


def _runtime_discard() -> None:
    global _runtime
    with _runtime_lock:
        _runtime = None


def _in_db_thread(fn: Callable[[], T]) -> Callable[[], T]:
    def run() -> T:
        close_old_connections()
        return fn()

    return run


class _Chunk:
    """Posts one chunk's claimed sends on the process's event loop; all state here is this run's only."""

    def __init__(self, *, broadcast: Broadcast, sends: list[_Claimed], runtime: _Runtime, first_id: int, last_id: int):
        self.broadcast = broadcast
        self.first_id, self.last_id = first_id, last_id
        self.claim_size = chunk_size(max_mps=broadcast.channel.max_mps)
        self.exhausted = False
        # Called (in the DB thread) once the broadcast has nothing left to claim: hands the channel on.
        self.on_exhausted: Callable[[], None] | None = None
        self.channel = broadcast.channel
        self.builder = TemplateMessageBuilder(broadcast.template)
        self.runtime = runtime
        self.client = runtime.graph_client()
        self.queue: deque[_Claimed] = deque(sends)
        self.results: list[tuple[_Claimed, SendResult, datetime]] = []
        self.deferred: list[tuple[_Claimed, float]] = []
        self.rows_written: list[_Row] = []
        self.report = ChunkReport(claimed=len(sends))
        self.marked: set[int] = set()
        self.account_error: SendResult | None = None
        self.paused = False
        self.store_down = False
        self.stop: str | None = None
        self.status_seen = BroadcastStatus.IN_PROGRESS
        rate = ratelimit.effective_rate(self.channel.max_mps)
        # POSTs this process lets out in any one second: the cap less a jitter margin (see settings).
        cap = self.channel.max_mps
        self.window_cap = max(1, cap - max(2 if cap > 2 else 0, math.ceil(cap * settings.DELIVERY_WINDOW_MARGIN)))
        self.batch = max(1, int(rate * ratelimit.HORIZON_SECONDS) + 1)
        self.hold = settings.DELIVERY_SAME_NUMBER_SECONDS + 0.5

    async def _db(self, fn: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.runtime.db, _in_db_thread(fn))

    async def _post(self, send: _Claimed) -> None:
        try:
            payload = self.builder.build(send.to, send.variables)
        except MissingVariablesError as exc:
            # Normally failed at creation; a template edited since then is caught here, without a POST.
            self.results.append((send, _missing(exc), timezone.now()))
            return
        result = await self.client.send_message(
            phone_number_id=self.channel.phone_number_id, access_token=self.channel.access_token, payload=payload
        )
        self.report.posted += 1
        self.results.append((send, result, timezone.now()))
        if result.error is not None and not result.unknown:
            self._release_number(send)
        if result.error_class is ErrorClass.ACCOUNT and self.account_error is None:
            self.account_error = result

    def _take_results(self) -> list[tuple[_Claimed, SendResult, datetime]]:
        # Swapped on the loop's thread, where the POST coroutines append: nothing is lost in between.
        results, self.results = self.results, []
        return results

    def _flush(self, results: list[tuple[_Claimed, SendResult, datetime]]) -> str:
        """Record the given outcomes and read the broadcast's status (runs in the DB thread)."""
        cancelled = self.status_seen == BroadcastStatus.CANCELLED
        rows = [_outcome_row(send=s, result=r, now=at, cancelled=cancelled) for s, r, at in results]
        sends_record(rows=rows)
        self.rows_written += rows
        status = Broadcast.objects.filter(id=self.broadcast.id).values_list("status", flat=True).first()
        return status or BroadcastStatus.CANCELLED

    def _pause_for(self) -> None:
        from broadcasts.services import broadcast_pause

        assert self.account_error is not None and self.account_error.error is not None
        error = self.account_error.error
        self.paused = True
        try:
            broadcast_pause(
                broadcast_id=self.broadcast.id,
                reason={"code": error.code, "message": error.message},
            )
        except ConflictError:
            pass  # already paused, cancelled or finished by someone else

    async def run(self) -> None:
        """Bookkeeping (outcome writes, status checks, claims, slot reservations) runs here; firing the reserved
        slots runs in ``_fire`` beside it on the same loop, so a slow database write never makes a slot late."""
        loop = asyncio.get_running_loop()
        deadline = time.monotonic() + _lease_seconds() * POSTING_SHARE_OF_LEASE
        next_check = time.monotonic() + CHECK_INTERVAL_SECONDS
        schedule: deque[tuple[float, _Claimed]] = deque()
        in_flight: set[asyncio.Task] = set()
        next_plan = 0.0
        halt = asyncio.Event()
        planned = asyncio.Event()
        firing = loop.create_task(self._fire(schedule, in_flight, halt, planned))

        while not firing.done():
            now = time.monotonic()
            if self.account_error is not None:
                self.stop = "account_error"
                break
            if now >= next_check:
                results = self._take_results()
                next_check = time.monotonic() + CHECK_INTERVAL_SECONDS
                try:
                    self.status_seen = await self._db(functools.partial(self._flush, results))
                    self.store_down = False
                except db.Error:
                    # The database is away (restart): keep the outcomes for the next try, post nothing new.
                    logger.warning("delivery: outcome UPDATE failed; retrying in %.1f s", CHECK_INTERVAL_SECONDS)
                    self.results[:0] = results
                    self.store_down = True
                if self.status_seen != BroadcastStatus.IN_PROGRESS:
                    self.stop = str(self.status_seen).lower()
                    break
            if now >= deadline:
                self.stop = "deadline"
                break
            if (
                not self.exhausted
                and not self.store_down
                and len(self.queue) < 2 * self.batch
                and now < deadline - REFILL_STOP_SECONDS
            ):
                await self._refill()
            horizon = schedule[-1][0] if schedule else now
            if (
                self.queue
                and not self.store_down
                and now >= next_plan
                and horizon - now < ratelimit.HORIZON_SECONDS / 2 + ratelimit.LEAD_SECONDS
            ):
                next_plan = await self._plan(schedule)
                planned.set()
            if not schedule and not self.queue:
                break
            wake = min(next_check, deadline)
            if self.queue and not self.store_down:
                plan_at = schedule[-1][0] - ratelimit.HORIZON_SECONDS / 2 - ratelimit.LEAD_SECONDS if schedule else 0
                wake = min(wake, max(next_plan, plan_at))
            # Never asleep long: sends given up as late come back to the queue and want new slots.
            await asyncio.sleep(max(0.001, min(wake - time.monotonic(), MAX_BOOKKEEPING_SLEEP_SECONDS)))

        halt.set()
        planned.set()
        await firing
        if self.stop is None and self.exhausted and not self.queue and self.on_exhausted is not None:
            # Every slot has fired: the channel's next broadcast may start claiming and reserving while this
            # chunk waits for its last answers and writes them (the channel does not idle, and two processes
            # never fire at once, so each one's one-second log still bounds the channel).
            with contextlib.suppress(db.Error, RedisError):
                await self._db(self.on_exhausted)
                self.report.handed_off = True

        # Not fired: back to the front of the queue, in order, and their numbers free again (they were held
        # for a POST that did not happen; the next chunk would otherwise wait 6 s for them).
        while schedule:
            send = schedule.pop()[1]
            self.queue.appendleft(send)
            self._release_number(send)
        if self.account_error is not None:
            # Pause first, so the other workers' chunks see it at their next check; then wait for answers.
            await self._db(self._pause_for)
        if in_flight:
            await asyncio.gather(*in_flight, return_exceptions=True)
        if self.account_error is not None and not self.paused:
            if self.stop is None:
                self.stop = "account_error"
            await self._db(self._pause_for)

    async def _fire(
        self,
        schedule: deque[tuple[float, _Claimed]],
        in_flight: set[asyncio.Task],
        halt: asyncio.Event,
        planned: asyncio.Event,
    ) -> None:
        """Fire every slot that is due; POSTs run concurrently on the loop.

        A slot missed by more than the tolerance (this process was descheduled) is given up, never fired late next
        to on-time slots: that is what would put more than max_mps into one second. This process also keeps the
        log of its own POSTs over the last second and never exceeds the channel's cap in it, even when a stall
        makes several slots due at once.
        """
        loop = asyncio.get_running_loop()
        limit = asyncio.Semaphore(settings.DELIVERY_MAX_IN_FLIGHT)
        fired: deque[float] = deque()

        def done(task: asyncio.Task) -> None:
            in_flight.discard(task)
            limit.release()

        while not halt.is_set() and self.account_error is None:
            late: list[_Claimed] = []
            while schedule and self.account_error is None and not halt.is_set():
                slot, send = schedule[0]
                now = time.monotonic()
                if now - slot > LATE_TOLERANCE_SECONDS:
                    schedule.popleft()
                    late.append(send)
                    continue
                if slot > now + 0.0005:
                    break
                while fired and fired[0] <= now - 1.0:
                    fired.popleft()
                if len(fired) >= self.window_cap:
                    break
                schedule.popleft()
                await limit.acquire()
                fired.append(time.monotonic())
                task = loop.create_task(self._post(send))
                in_flight.add(task)
                task.add_done_callback(done)
            if late:
                self.report.late += len(late)
                self.queue.extendleft(reversed(late))
                for send in late:
                    self._release_number(send)
            if schedule:
                head = schedule[0][0]
                if len(fired) >= self.window_cap:
                    head = max(head, fired[0] + 1.0)
                await asyncio.sleep(max(0.0, min(head - time.monotonic(), MAX_BOOKKEEPING_SLEEP_SECONDS)))
            else:
                planned.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(planned.wait(), MAX_BOOKKEEPING_SLEEP_SECONDS)

    def _release_number(self, send: _Claimed) -> None:
        try:
            ratelimit.numbers_release(channel_id=self.channel.id, number=send.to, token=str(send.id))
        except RedisError:
            pass  # the hold expires by itself within 6.5 s

    async def _refill(self) -> None:
        """Claim the broadcast's next due sends before the queue runs dry, so the channel does not idle."""
        try:
            more = await self._db(
                lambda: _claim(
                    broadcast_id=self.broadcast.id,
                    first_id=self.first_id,
                    last_id=self.last_id,
                    now=timezone.now(),
                    limit=self.claim_size,
                )
            )
        except db.Error:
            self.store_down = True
            return
        if not more:
            self.exhausted = True
            return
        self.report.claimed += len(more)
        self.queue.extend(more)

    async def _plan(self, schedule: deque) -> float:
        """Reserve the next slots and give them to queued sends whose number is free; returns when to plan next."""
        batch = [self.queue.popleft() for _ in range(min(self.batch, len(self.queue)))]
        unmarked = [s.id for s in batch if s.id not in self.marked]
        try:
            if unmarked:
                await self._db(lambda: _mark_posting(unmarked))
                self.marked.update(unmarked)
            grant = ratelimit.channel_reserve(channel_id=self.channel.id, max_mps=self.channel.max_mps, want=len(batch))
        except (db.Error, RedisError):
            # Database or Redis away for a moment: nothing is sent unmarked or unpaced; try again shortly.
            logger.warning("delivery: cannot mark or pace sends; retrying in %.1f s", CHECK_INTERVAL_SECONDS)
            self.queue.extendleft(reversed(batch))
            return time.monotonic() + CHECK_INTERVAL_SECONDS
        if grant.count == 0:
            self.queue.extendleft(reversed(batch))
            return grant.first_at - ratelimit.HORIZON_SECONDS - ratelimit.LEAD_SECONDS
        use, rest = batch[: grant.count], batch[grant.count :]
        self.queue.extendleft(reversed(rest))
        try:
            waits = ratelimit.numbers_claim(
                channel_id=self.channel.id,
                numbers=[s.to for s in use],
                hold_seconds=self.hold,
                tokens=[str(s.id) for s in use],
            )
        except RedisError:
            self.queue.extendleft(reversed(use))
            return time.monotonic() + CHECK_INTERVAL_SECONDS
        times = grant.slot_times()
        ready = []
        for send, wait in zip(use, waits, strict=True):
            if wait > 0:
                self.deferred.append((send, wait))
            else:
                ready.append(send)
        # Slots are used in order; those of deferred sends go unused (never saved up: no burst later).
        schedule.extend(zip(times, ready, strict=False))
        return 0.0

    def finish(self) -> None:
        """Record the last outcomes and hand back what was not posted (runs in the DB thread)."""
        now = timezone.now()
        self.status_seen = self._flush(self._take_results())
        rows: list[_Row] = []
        for send, wait in self.deferred:
            # The number got a message on this channel < 6 s ago: spaced, not dropped, and no attempt counted.
            rows.append(
                _Row(
                    id=send.id,
                    status=SendStatus.PENDING,
                    attempts_delta=-1,
                    next_attempt_at=now + timedelta(seconds=wait),
                )
            )
        cancelled = self.status_seen == BroadcastStatus.CANCELLED
        for send in self.queue:
            rows.append(
                _Row(
                    id=send.id,
                    status=SendStatus.CANCELLED if cancelled else SendStatus.PENDING,
                    attempts_delta=-1,
                )
            )
        sends_record(rows=rows)
        self.rows_written += rows
        self.report.deferred = len(self.deferred)
        self.report.released = 0 if cancelled else len(self.queue)


def _missing(exc: MissingVariablesError) -> SendResult:
    from whatsapp.errors import GraphError

    return SendResult(
        error=GraphError(
            code="missing_variables",
            title="Missing variables",
            message=str(exc),
            http_status=None,
            error_class=ErrorClass.PERMANENT,
        )
    )


def send_chunk_deliver(*, broadcast_id: str, first_id: int, last_id: int) -> ChunkReport:
    """Claim and post one chunk of a broadcast's sends (ids first_id..last_id); safe to run twice."""
    broadcast = Broadcast.objects.select_related("channel", "template").filter(id=broadcast_id).first()
    report = ChunkReport()
    if broadcast is None:
        return report
    if broadcast.status == BroadcastStatus.CANCELLED:
        report.cancelled = sends_cancel_unleased(broadcast_id=broadcast_id)
        return report
    if broadcast.status != BroadcastStatus.IN_PROGRESS:
        return report
    channel_id = broadcast.channel_id
    holder = ratelimit.pid_holder()
    if not ratelimit.channel_slot_acquire(
        channel_id=channel_id,
        holder=holder,
        limit=settings.DELIVERY_CHANNEL_PARALLELISM,
        hold_seconds=_lease_seconds(),
    ):
        report.channel_busy = True
        return report
    try:
        sends = _claim(
            broadcast_id=broadcast_id,
            first_id=first_id,
            last_id=last_id,
            now=timezone.now(),
            limit=chunk_size(max_mps=broadcast.channel.max_mps),
        )
        report.claimed = len(sends)
        if not sends:
            return report
        runtime = _get_runtime()
        chunk = _Chunk(broadcast=broadcast, sends=sends, runtime=runtime, first_id=first_id, last_id=last_id)
        chunk.on_exhausted = functools.partial(
            _channel_hand_off, broadcast_id=broadcast_id, channel_id=channel_id, holder=holder
        )
        try:
            runtime.loop.run_until_complete(chunk.run())
        except BaseException:
            # Time limit or bug mid-run: POSTs may still be pending on the loop; start afresh next time (their
            # sends keep lease and posting marker, so the sweeper counts them as unknown outcomes).
            _runtime_discard()
            raise
        finally:
            # The DB thread owns the connection that wrote the outcomes so far; finish there too.
            runtime.db.submit(_in_db_thread(chunk.finish)).result()
        report = _summarize(chunk)
    finally:
        ratelimit.channel_slot_release(channel_id=channel_id, holder=holder)
    _after_chunk(broadcast_id=broadcast_id, channel_id=channel_id, report=report)
    return report


def _summarize(chunk: _Chunk) -> ChunkReport:
    report = chunk.report
    report.stop = chunk.stop
    report.rows = chunk.rows_written
    wakes = []
    for row in chunk.rows_written:
        if row.status == SendStatus.SENT:
            report.sent += 1
        elif row.status == SendStatus.FAILED:
            report.failed += 1
        elif row.status == SendStatus.CANCELLED:
            report.cancelled += 1
        elif row.status == SendStatus.PENDING and row.next_attempt_at is not None:
            wakes.append(row.next_attempt_at)
            if row.attempts_delta == 0:
                report.retried += 1
        report.unknown += row.unknown_inc
    if wakes:
        report.wake_at = min(wakes)
    return report


def _channel_others_dispatch(*, broadcast_id: str, channel_id: str) -> None:
    """Wake the channel's other running broadcasts at once (their pumps may be waiting with a countdown)."""
    from broadcasts.tasks import broadcast_dispatch_task

    others = list(
        Broadcast.objects.filter(channel_id=channel_id, status=BroadcastStatus.IN_PROGRESS)
        .exclude(id=broadcast_id)
        .values_list("id", flat=True)[:20]
    )
    for other in others:
        broadcast_dispatch_task.delay(other)


def _channel_hand_off(*, broadcast_id: str, channel_id: str, holder: str) -> None:
    """This chunk's broadcast has nothing left to claim: free its place on the channel and wake the others."""
    ratelimit.channel_slot_release(channel_id=channel_id, holder=holder)
    _channel_others_dispatch(broadcast_id=broadcast_id, channel_id=channel_id)


def _after_chunk(*, broadcast_id: str, channel_id: str, report: ChunkReport) -> None:
    """Finish the broadcast when nothing is pending; otherwise make sure later work gets woken. Then hand the
    channel over to its other running broadcasts, unless the chunk did so already when it ran out of sends."""
    if not report.handed_off:
        _channel_others_dispatch(broadcast_id=broadcast_id, channel_id=channel_id)
    if report.stop == "deadline" and report.released:
        broadcast_wake(broadcast_id=broadcast_id, at=timezone.now())
    elif report.wake_at is not None:
        broadcast_wake(broadcast_id=broadcast_id, at=report.wake_at)
    if report.stop in (None, "deadline"):
        broadcast_finalize(broadcast_id=broadcast_id)


def broadcasts_in_progress() -> Iterable[str]:
    return Broadcast.objects.filter(status=BroadcastStatus.IN_PROGRESS).values_list("id", flat=True)
