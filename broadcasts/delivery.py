"""The delivery engine: fan a broadcast out to the workers and post its sends at the channel's speed.

The database is the truth; the broker only wakes workers. A broadcast moves like this:

1. ``broadcast_dispatch`` marks it IN_PROGRESS (once, conditionally) and enqueues chunk tasks over id ranges of
   its due, unleased PENDING sends; it also schedules a wake for the earliest retry due later.
2. ``send_chunk_deliver`` CLAIMS the chunk's sends with one conditional UPDATE (PENDING, due, no live lease ->
   lease, attempts + 1), so a chunk that runs twice does nothing the second time; posts them concurrently on an
   asyncio loop within the channel's cap (broadcasts/ratelimit.py); and records outcomes with a bulk UPDATE
   every ~0.5 s (and at the end), checking between batches whether the broadcast was paused or cancelled.
   When the broadcast has nothing left to claim, the same run goes on with the channel's next running broadcast
   (``_ChannelPump``), so the channel neither idles nor changes process between broadcasts.
3. When nothing is pending, the broadcast becomes COMPLETED (or FAILED: no send ever accepted), exactly once.

Lost messages, killed workers and an emptied Redis are recovered by the beat sweeper (broadcasts/recovery.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import gc
import logging
import math
import os
import random
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVar

import orjson
import uvloop
from celery.exceptions import SoftTimeLimitExceeded
from django import db
from django.conf import settings
from django.db import close_old_connections, connection, transaction
from django.db.models import F, Max, Min, Q
from django.utils import timezone
from kombu.exceptions import KombuError
from redis.exceptions import RedisError

from broadcasts import ratelimit
from broadcasts.models import Broadcast, BroadcastStatus, Send, SendStatus
from core.backoff import backoff_seconds
from core.errors import ConflictError
from events.publisher import broadcast_event_publish, message_events_publish
from whatsapp.client import GraphClient, SendResult
from whatsapp.errors import ErrorClass
from whatsapp.payload import MissingVariablesError, TemplateMessageBuilder

logger = logging.getLogger(__name__)
T = TypeVar("T")

# Outcomes are written at least this often while a chunk runs, so a webhook for a fresh wamid finds its send
# and a killed worker loses at most ~0.5 s of recorded work; the broadcast status is read at the same beat.
CHECK_INTERVAL_SECONDS = 0.5
# The gate of cancel and pause (CONTRACT 5: no POST leaves after their 200). Every POST's send is marked posting
# by a conditional UPDATE that passes only while the broadcast is IN_PROGRESS; a POST may leave only within
# POST_PERMIT_SECONDS of the moment that UPDATE was sent (this process's clock). Cancel and pause commit the new
# status, then wait FENCE_SECONDS before answering: any mark that passed was taken before their commit, so every
# POST it allowed left before the answer. Causal order only: no clock is compared across machines.
POST_PERMIT_SECONDS = 0.3
FENCE_SECONDS = 0.4
# A failed outcome write is tried again this often until the database answers or the chunk's time is up.
STORE_RETRY_SECONDS = 0.25
# The chunk gives up retrying this long before its soft time limit (its outcomes then live in the Redis journal).
GIVE_UP_MARGIN_SECONDS = 1.0
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
# While a pump runs, a thread holding the GIL (the DB thread building an UPDATE) hands it over this often, so a
# slot waits at most ~1 ms for it, not Python's default 5 ms.
PUMP_SWITCH_INTERVAL_SECONDS = 0.001


# --- small helpers ---------------------------------------------------------------------------------------


def chunk_size(*, max_mps: int) -> int:
    """Sends per chunk task: ~DELIVERY_CHUNK_SECONDS of work while the channel's chunks share its cap, between
    10 and DELIVERY_CHUNK_MAX."""
    share = max_mps * settings.DELIVERY_CHUNK_SECONDS / max(1, settings.DELIVERY_CHANNEL_PARALLELISM)
    return max(10, min(settings.DELIVERY_CHUNK_MAX, round(share)))


def retry_delay(*, attempts: int) -> float:
    """Exponential backoff with +-25 % jitter, capped: base * 2^(attempts-1)."""
    return backoff_seconds(
        attempts=attempts,
        base=settings.DELIVERY_RETRY_BASE_SECONDS,
        cap=settings.DELIVERY_RETRY_MAX_SECONDS,
        jitter=0.25,
    )


def _lease_seconds() -> float:
    return settings.DELIVERY_LEASE_SECONDS


def chunk_time_limits() -> tuple[int, int]:
    """(soft, hard) time limits of a chunk task: the hard one stays below the sends' lease, so a chunk is dead
    before the sweeper may take its sends back; the soft one leaves time to record outcomes."""
    lease = int(_lease_seconds())
    return max(5, lease - 10), max(6, lease - 5)


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
    # False for a send handed back without a POST (a cancel makes it CANCELLED, never FAILED).
    posted: bool = True


@dataclass
class ChunkReport:
    """What one chunk run did (for logs, tests and the benchmark)."""

    broadcast_id: str = ""
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


def _mark_posting(*, broadcast_id: str, ids: list[int]) -> tuple[float, set[int], str | None]:
    """The gate: mark these sends posting (Send.posting_at) only while the broadcast is IN_PROGRESS.

    Returns (when the UPDATE was sent, on this process's monotonic clock; the ids marked; the broadcast's
    status when the gate is closed, else None). POSTs for the marked sends may leave until the first value plus
    POST_PERMIT_SECONDS, never later (see FENCE_SECONDS).
    """
    sent_at = time.monotonic()
    if not ids:
        return sent_at, set(), None
    marks = ", ".join(["%s"] * len(ids))
    sql = f"""
        UPDATE broadcasts_send SET posting_at = %s
        WHERE id IN ({marks}) AND status = 'PENDING'
          AND EXISTS (SELECT 1 FROM broadcasts_broadcast b WHERE b.id = %s AND b.status = 'IN_PROGRESS')
        RETURNING id
    """
    with connection.cursor() as cursor:
        cursor.execute(sql, [_dt_param(timezone.now()), *ids, broadcast_id])
        marked = {row[0] for row in cursor.fetchall()}
    closed = None
    if not marked:
        status = Broadcast.objects.filter(id=broadcast_id).values_list("status", flat=True).first()
        if status != BroadcastStatus.IN_PROGRESS:
            closed = status or BroadcastStatus.CANCELLED
    return sent_at, marked, closed


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
    """Write outcomes for leased sends with ONE UPDATE (PostgreSQL) and record their message events with it.

    Only PENDING rows are touched: a send is final once, whatever runs twice. Returns ids per new status.
    The outcome UPDATE and the events it causes commit together: an event is never lost once its outcome is
    written, and a failure of either leaves both to be written again.
    """
    if not rows:
        return {}
    with transaction.atomic():
        return _sends_record(rows=rows)


def _sends_record(*, rows: list[_Row]) -> dict[str, list[int]]:
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


def _outcome_row(*, send: _Claimed, result: SendResult, now: datetime) -> _Row:
    """Map one POST's result onto the send (attempts were already counted by the claim).

    A cancelled broadcast's transient failure is not tried again, so it would end FAILED with its error there
    (CANCELLED means "never posted": that send was). The row says PENDING; see _cancelled_row.
    """
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
        at = now + timedelta(seconds=retry_delay(attempts=send.attempts))
        return _Row(id=send.id, status=SendStatus.PENDING, next_attempt_at=at, **fields)
    return _Row(id=send.id, status=SendStatus.FAILED, failed_at=now, **fields)


def _cancelled_row(row: _Row, *, now: datetime) -> _Row:
    """A cancelled broadcast's row: a send handed back unposted becomes CANCELLED; a posted one that would wait
    for another attempt ends FAILED with its error (CANCELLED counts exactly the sends never posted)."""
    if row.status != SendStatus.PENDING:
        return row
    if not row.posted:
        return dataclasses.replace(row, status=SendStatus.CANCELLED, next_attempt_at=None)
    return dataclasses.replace(row, status=SendStatus.FAILED, next_attempt_at=None, failed_at=now)


# --- the outcome journal ----------------------------------------------------------------------------------
# A chunk whose outcome write fails (PostgreSQL away) keeps its rows in memory and tries again; it also puts the
# final ones (SENT, FAILED: what Meta answered) in this Redis hash at once, so that they survive the chunk
# giving up at its time limit. The sweeper applies the hash before it takes back expired leases, so a send Meta
# accepted is never posted again. Applying a row twice changes nothing (only PENDING sends are written).

JOURNAL_KEY = "delivery:journal"
_JOURNAL_FIELDS = (
    "id",
    "status",
    "attempts_delta",
    "unknown_inc",
    "message_id",
    "error_code",
    "error_title",
    "error_message",
    "error_retryable",
)


def journal_put(rows: list[_Row]) -> str | None:
    """Keep the final rows in Redis; returns the entry's key, or None (nothing final, or Redis away too)."""
    final = [r for r in rows if r.status in (SendStatus.SENT, SendStatus.FAILED)]
    client = ratelimit.redis_client()
    if not final or client is None:
        return None
    entry = {
        "at": time.time(),
        "rows": [{name: getattr(r, name) for name in _JOURNAL_FIELDS} for r in final],
    }
    key = f"{os.getpid()}:{time.monotonic_ns()}:{random.getrandbits(32):08x}"
    try:
        client.hset(JOURNAL_KEY, key, orjson.dumps(entry))
    except RedisError:
        return None
    return key


def journal_drop(keys: list[str]) -> None:
    """Those entries were written to the database by their chunk after all."""
    client = ratelimit.redis_client()
    if keys and client is not None:
        with contextlib.suppress(RedisError):
            client.hdel(JOURNAL_KEY, *keys)


def journal_apply() -> int:
    """Write every journaled outcome to the database (sweeper; before expired leases are taken back)."""
    client = ratelimit.redis_client()
    if client is None:
        return 0
    entries = client.hgetall(JOURNAL_KEY)
    applied = 0
    for key, raw in entries.items():
        entry = orjson.loads(raw)
        at = datetime.fromtimestamp(entry["at"], tz=timezone.get_current_timezone())
        rows = [
            _Row(
                **item,
                sent_at=at if item["status"] == SendStatus.SENT else None,
                failed_at=at if item["status"] == SendStatus.FAILED else None,
            )
            for item in entry["rows"]
        ]
        written = sends_record(rows=rows)
        applied += sum(len(ids) for ids in written.values())
        client.hdel(JOURNAL_KEY, key)
    if applied:
        logger.warning("delivery: %d outcomes written from the journal", applied)
    return applied


# --- the per-process asyncio runtime ----------------------------------------------------------------------


class _Runtime:
    """One event loop, one pooled Graph client and one database thread per task-running thread (made after fork)."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        # uvloop: asyncio's API at a lower CPU cost per callback and per socket event.
        self.loop = uvloop.new_event_loop()
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


# One runtime per thread that runs tasks: a prefork child has one; the demo's thread pool runs several tasks at
# once, and an event loop cannot run twice. The pid check drops what a forked child inherited from its parent.
_runtimes = threading.local()


def _get_runtime() -> _Runtime:
    runtime = getattr(_runtimes, "runtime", None)
    if runtime is None or runtime.pid != os.getpid():
        runtime = _runtimes.runtime = _Runtime()
    return runtime


def _runtime_discard() -> None:
    _runtimes.runtime = None


def _in_db_thread(fn: Callable[[], T]) -> Callable[[], T]:
    def run() -> T:
        close_old_connections()
        return fn()

    return run


class PostLog:
    """One pump's POSTs on its channel over the last second, and how late they have lately been.

    The GCRA schedule spaces POSTs evenly; this guards the cap when they do not leave or arrive on time. A late
    loop fires its due slots together, and the stall that made it late (CPU contention) delays POSTs on the way
    to Meta as well, so what arrives there bunched can pack more than the schedule's rate into one second. The
    log lets at most ``budget()`` POSTs out in any second: the cap less a fixed margin (DELIVERY_WINDOW_MARGIN),
    less what may arrive bunched, rate x lag. The lag is the worst recent lateness of a slot or inflation of an
    answer's time over the quickest one, decaying with a half-life of LAG_HALF_LIFE_SECONDS. Measured on bench
    (b), four pumps on two cores: a fixed margin alone let ~1 run in 5 put 1,001-1,014 into one second.
    """

    LAG_HALF_LIFE_SECONDS = 1.0
    # A slow answer (a timeout) says nothing more about bunching than this much.
    MAX_LAG_SECONDS = 0.05

    def __init__(self, *, max_mps: int):
        self.base = ratelimit.window_budget(max_mps)
        self.rate = ratelimit.effective_rate(max_mps)
        self.times: deque[float] = deque()
        self.lag = 0.0
        self.lag_at = time.monotonic()
        self.quickest = math.inf
        # Until when the log itself held POSTs back: that wait is not the loop's lateness.
        self.held_until = 0.0

    def budget(self) -> int:
        return max(1, self.base - math.floor(self.rate * self.lag))

    def full(self, now: float) -> bool:
        while self.times and self.times[0] <= now - 1.0:
            self.times.popleft()
        if self.lag:
            self.lag *= 0.5 ** ((now - self.lag_at) / self.LAG_HALF_LIFE_SECONDS)
        self.lag_at = now
        if len(self.times) < self.budget():
            return False
        self.held_until = self.free_at()
        return True

    def record(self, at: float, *, slot: float) -> None:
        """A POST due at ``slot`` left at ``at``."""
        self.times.append(at)
        self._lagged(at - max(slot, self.held_until))

    def answered(self, seconds: float) -> None:
        """A POST was answered in ``seconds``: time above the quickest answer so far was spent queued somewhere
        on the way (this machine's CPU, the network, Meta's front), where POSTs bunch as well."""
        self.quickest = min(self.quickest, seconds)
        self._lagged(seconds - self.quickest)

    def _lagged(self, seconds: float) -> None:
        self.lag = max(self.lag, min(seconds, self.MAX_LAG_SECONDS))

    def free_at(self) -> float:
        """When the next POST may go as far as the log is concerned."""
        over = len(self.times) - self.budget()
        return self.times[over] + 1.0 if over >= 0 else 0.0


class _Chunk:
    """Posts one broadcast's claimed sends on the process's event loop; all state here is this run's only."""

    def __init__(
        self,
        *,
        broadcast: Broadcast,
        sends: list[_Claimed],
        runtime: _Runtime,
        first_id: int,
        last_id: int,
        deadline: float,
        give_up_at: float,
        log: PostLog,
    ):
        self.broadcast = broadcast
        self.first_id, self.last_id = first_id, last_id
        self.claim_size = chunk_size(max_mps=broadcast.channel.max_mps)
        # No new slot after this (time.monotonic()): shared by every chunk of one pump.
        self.deadline = deadline
        # Outcome writes that fail are tried again until this (time.monotonic()), just before the soft time limit.
        self.give_up_at = give_up_at
        # This process's POSTs on the channel over the last second: shared by the pump's chunks.
        self.log = log
        self.exhausted = False
        # Called once the broadcast has nothing left to claim and its last slots are reserved: the pump starts
        # the channel's next broadcast, whose slots then follow these without a gap.
        self.on_exhausted: Callable[[], None] | None = None
        self.finished = False
        self.channel = broadcast.channel
        self.builder = TemplateMessageBuilder(broadcast.template)
        self.runtime = runtime
        self.client = runtime.graph_client()
        self.queue: deque[_Claimed] = deque(sends)
        self.results: list[tuple[_Claimed, SendResult, datetime]] = []
        self.deferred: list[tuple[_Claimed, float]] = []
        self.rows_written: list[_Row] = []
        # Rows whose write failed (tried again with the next write) and their journal entries in Redis.
        self.unwritten: list[_Row] = []
        self.journal_keys: list[str] = []
        self.report = ChunkReport(claimed=len(sends))
        # The broadcast's status when the posting gate found it no longer IN_PROGRESS.
        self.gate_closed: str | None = None
        self.account_error: SendResult | None = None
        self.paused = False
        self.store_down = False
        self.stop: str | None = None
        self.status_seen = BroadcastStatus.IN_PROGRESS
        rate = ratelimit.effective_rate(self.channel.max_mps)
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
        sent_at = time.monotonic()
        result = await self.client.send_message(
            phone_number_id=self.channel.phone_number_id, access_token=self.channel.access_token, payload=payload
        )
        if result.ok:
            self.log.answered(time.monotonic() - sent_at)
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

    def _flush(self, results: list[tuple[_Claimed, SendResult, datetime]], extra: Iterable[_Row] = ()) -> str:
        """Record the given outcomes (and any whose write failed before) and read the broadcast's status (runs in
        the DB thread). When the write fails, the rows are kept for the next one and the final ones journaled in
        Redis at once (see journal_put): a known answer is never only in memory for longer than a write."""
        new = [_outcome_row(send=s, result=r, now=at) for s, r, at in results]
        new += extra
        rows = self.unwritten = self.unwritten + new
        try:
            status = Broadcast.objects.filter(id=self.broadcast.id).values_list("status", flat=True).first()
            status = status or BroadcastStatus.CANCELLED
            if status == BroadcastStatus.CANCELLED:
                now = timezone.now()
                rows = [_cancelled_row(row, now=now) for row in rows]
            sends_record(rows=rows)
        except (db.Error, RedisError):
            key = journal_put(new)
            if key is not None:
                self.journal_keys.append(key)
            raise
        self.unwritten = []
        self.rows_written += rows
        keys, self.journal_keys = self.journal_keys, []
        journal_drop(keys)
        return status

    def _flush_retrying(self, results: list[tuple[_Claimed, SendResult, datetime]], extra: list[_Row]) -> str | None:
        """_flush until it succeeds or the chunk's time is up (DB thread); None when it gave up."""
        while True:
            try:
                return self._flush(results, extra)
            except (db.Error, RedisError) as exc:
                if results or extra:
                    logger.warning(
                        "delivery: last outcome write of broadcast %s failed (%s); retrying every %.2f s",
                        self.broadcast.id,
                        exc.__class__.__name__,
                        STORE_RETRY_SECONDS,
                    )
                results, extra = [], []  # now in self.unwritten
                with contextlib.suppress(Exception):
                    connection.close()  # reconnect on the next try
                if time.monotonic() + STORE_RETRY_SECONDS >= self.give_up_at:
                    logger.error(
                        "delivery: giving up writing %d outcomes of broadcast %s (%s); %d journaled in Redis",
                        len(self.unwritten),
                        self.broadcast.id,
                        exc,
                        sum(1 for r in self.unwritten if r.status in (SendStatus.SENT, SendStatus.FAILED)),
                    )
                    return None
                time.sleep(STORE_RETRY_SECONDS)

    def _pause_for(self) -> None:
        from broadcasts.services import broadcast_pause

        assert self.account_error is not None and self.account_error.error is not None
        error = self.account_error.error
        self.paused = True
        try:
            broadcast_pause(
                broadcast_id=self.broadcast.id,
                reason={"code": error.code, "message": error.message},
                fence=False,
            )
        except ConflictError:
            pass  # already paused, cancelled or finished by someone else

    async def run(self) -> None:
        """Bookkeeping (outcome writes, status checks, claims, slot reservations) runs here; firing the reserved
        slots runs in ``_fire`` beside it on the same loop, so a slow database write never makes a slot late."""
        loop = asyncio.get_running_loop()
        deadline = self.deadline
        next_check = time.monotonic() + CHECK_INTERVAL_SECONDS
        # (slot, send, permit): the POST goes at its slot, and only before its permit ends (see _mark_posting).
        schedule: deque[tuple[float, _Claimed, float]] = deque()
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
            if self.gate_closed is not None:
                # Paused or cancelled: the gate let nothing more through; what is in flight is still recorded.
                self.status_seen = self.gate_closed
                self.stop = str(self.gate_closed).lower()
                break
            if now >= next_check:
                results = self._take_results()
                next_check = time.monotonic() + CHECK_INTERVAL_SECONDS
                try:
                    self.status_seen = await self._db(functools.partial(self._flush, results))
                    self.store_down = False
                except (db.Error, RedisError):
                    # The database is away (restart): the outcomes are kept (and journaled) for the next try, and
                    # nothing new is posted (no send can be marked).
                    logger.warning("delivery: outcome UPDATE failed; retrying in %.1f s", CHECK_INTERVAL_SECONDS)
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
            if self.exhausted and not self.queue and self.on_exhausted is not None:
                self.on_exhausted()
                self.on_exhausted = None
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
        schedule: deque[tuple[float, _Claimed, float]],
        in_flight: set[asyncio.Task],
        halt: asyncio.Event,
        planned: asyncio.Event,
    ) -> None:
        """Fire every slot that is due; POSTs run concurrently on the loop.

        A slot missed by more than the tolerance (this process was descheduled) is given up, never fired late next
        to on-time slots: that is what would put more than max_mps into one second. The process's PostLog of the
        last second is the second guard, for when a stall makes several slots due at once. A slot whose permit
        (the posting gate's, see _mark_posting) has run out is given up too, whatever its time: the broadcast may
        have been paused or cancelled since, and the answer to that may be on its way.
        """
        loop = asyncio.get_running_loop()
        limit = asyncio.Semaphore(settings.DELIVERY_MAX_IN_FLIGHT)
        log = self.log

        def done(task: asyncio.Task) -> None:
            in_flight.discard(task)
            limit.release()

        while not halt.is_set() and self.account_error is None:
            late: list[_Claimed] = []
            while schedule and self.account_error is None and not halt.is_set():
                slot, send, permit = schedule[0]
                now = time.monotonic()
                if now - slot > LATE_TOLERANCE_SECONDS or now >= permit:
                    schedule.popleft()
                    late.append(send)
                    continue
                if slot > now + 0.0005:
                    break
                if log.full(now):
                    break
                if limit.locked():
                    await limit.acquire()
                    if time.monotonic() >= permit:  # waited for a free place past the permit: not this time
                        limit.release()
                        continue
                else:
                    await limit.acquire()
                schedule.popleft()
                log.record(time.monotonic(), slot=slot)
                task = loop.create_task(self._post(send))
                in_flight.add(task)
                task.add_done_callback(done)
            if late:
                self.report.late += len(late)
                self.queue.extendleft(reversed(late))
                for send in late:
                    self._release_number(send)
            if schedule:
                head = max(schedule[0][0], log.free_at())
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
        ids = [s.id for s in batch]
        try:
            # The gate: marked only while the broadcast is IN_PROGRESS, and each POST within its permit.
            marked_at, marked, closed = await self._db(
                functools.partial(_mark_posting, broadcast_id=self.broadcast.id, ids=ids)
            )
            if closed is not None:
                self.queue.extendleft(reversed(batch))
                self.gate_closed = closed
                return time.monotonic() + CHECK_INTERVAL_SECONDS
            # A send no longer PENDING (final meanwhile) is not ours to post or record.
            batch = [s for s in batch if s.id in marked]
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
        permit = marked_at + POST_PERMIT_SECONDS
        schedule.extend((slot, send, permit) for slot, send in zip(times, ready, strict=False))
        return 0.0

    def finish(self) -> None:
        """Record the last outcomes and hand back what was not posted (runs in the DB thread; once).

        A failed write is tried again until the database answers or the chunk's time is up (its sends' leases
        outlive the task, so nobody takes them back meanwhile); the final outcomes are in the journal by then.
        """
        if self.finished:
            return
        self.finished = True
        now = timezone.now()
        rows: list[_Row] = []
        for send, wait in self.deferred:
            # The number got a message on this channel < 6 s ago: spaced, not dropped, and no attempt counted.
            rows.append(
                _Row(
                    id=send.id,
                    status=SendStatus.PENDING,
                    attempts_delta=-1,
                    next_attempt_at=now + timedelta(seconds=wait),
                    posted=False,
                )
            )
        for send in self.queue:
            rows.append(_Row(id=send.id, status=SendStatus.PENDING, attempts_delta=-1, posted=False))
        status = self._flush_retrying(self._take_results(), rows)
        if status is not None:
            self.status_seen = status
        cancelled = self.status_seen == BroadcastStatus.CANCELLED
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


def send_chunk_deliver(*, broadcast_id: str, first_id: int, last_id: int) -> list[ChunkReport]:
    """Claim and post one chunk of a broadcast's sends (ids first_id..last_id), then go on with the channel's
    other running broadcasts in the same run (see _ChannelPump); safe to run twice. One report per broadcast
    served (a lone report with ``channel_busy`` when the channel already had its pumps)."""
    broadcast = Broadcast.objects.select_related("channel", "template").filter(id=broadcast_id).first()
    report = ChunkReport(broadcast_id=broadcast_id)
    if broadcast is None:
        return [report]
    if broadcast.status == BroadcastStatus.CANCELLED:
        report.cancelled = sends_cancel_unleased(broadcast_id=broadcast_id)
        return [report]
    if broadcast.status != BroadcastStatus.IN_PROGRESS:
        return [report]
    channel_id = broadcast.channel_id
    holder = ratelimit.pid_holder()
    try:
        acquired = ratelimit.channel_slot_acquire(
            channel_id=channel_id,
            holder=holder,
            limit=settings.DELIVERY_CHANNEL_PARALLELISM,
            hold_seconds=_lease_seconds(),
        )
    except RedisError:
        # Redis away: no place, no pacing, nothing to do; the sweeper dispatches the broadcast again once it is back.
        report.stop = "redis_down"
        return [report]
    if not acquired:
        report.channel_busy = True
        return [report]
    pump: _ChannelPump | None = None
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
            return [report]
        runtime = _get_runtime()
        pump = _ChannelPump(runtime=runtime, channel_id=channel_id)
        first = pump.chunk(broadcast=broadcast, sends=sends, first_id=first_id, last_id=last_id)
        try:
            with _steady_loop():
                runtime.loop.run_until_complete(pump.run(first))
        except BaseException:
            # Time limit or bug mid-run: POSTs may still be pending on the loop; start afresh next time (their
            # sends keep lease and posting marker, so the sweeper counts them as unknown outcomes).
            _runtime_discard()
            raise
        finally:
            # The DB thread owns the connection that wrote the outcomes so far; finish there too.
            for chunk in pump.chunks:
                runtime.db.submit(_in_db_thread(chunk.finish)).result()
    finally:
        ratelimit.channel_slot_release(channel_id=channel_id, holder=holder)
    reports = [_summarize(chunk) for chunk in pump.chunks]
    try:
        for chunk, chunk_report in zip(pump.chunks, reports, strict=True):
            _after_chunk(broadcast_id=chunk.broadcast.id, report=chunk_report)
        # Broadcasts this run did not reach (it stopped at its deadline) are woken now, not at their next retry.
        _channel_others_dispatch(broadcast_id=pump.chunks[-1].broadcast.id, channel_id=channel_id)
    except (db.Error, RedisError, KombuError) as exc:
        # Every outcome is written; only the wake-ups are lost, and the sweeper finds that work from the rows.
        logger.warning("delivery: could not wake the next work after a chunk (%s); the sweeper will", exc)
    return reports


@contextlib.contextmanager
def _steady_loop():
    """Keep the pump's event loop punctual: the objects alive before it (Django, the app) are moved out of the
    cyclic collector's reach, so no full collection stalls the loop for tens of ms between two slots, and the
    DB thread hands the GIL back every ~1 ms. Measured with bench-delivery (a): p99 from a POST's slot to its
    arrival at the sandbox 13 ms -> 2 ms."""
    switch = sys.getswitchinterval()
    gc.freeze()
    sys.setswitchinterval(PUMP_SWITCH_INTERVAL_SECONDS)
    try:
        yield
    finally:
        sys.setswitchinterval(switch)
        gc.unfreeze()


class _ChannelPump:
    """One run of a channel's pump: a chunk per broadcast, one after another on this process's loop.

    When a broadcast has nothing left to claim and its last slots are reserved, the channel's next running
    broadcast with due sends starts here at once: its slots follow on the same GCRA schedule without a gap, from
    the same warm connections, under the same one-second log (a hand-over to another process would leave the
    channel idle while that process woke up, then start it on cold connections). Every chunk stops at the run's
    deadline; what it did not post goes back and is woken.
    """

    def __init__(self, *, runtime: _Runtime, channel_id: str):
        self.runtime = runtime
        self.channel_id = channel_id
        started = time.monotonic()
        self.deadline = started + _lease_seconds() * POSTING_SHARE_OF_LEASE
        # Outcome writes are retried until just before the soft time limit (the leases outlive the hard one).
        self.give_up_at = started + chunk_time_limits()[0] - GIVE_UP_MARGIN_SECONDS
        self.log: PostLog | None = None
        self.chunks: list[_Chunk] = []
        self.runs: list[asyncio.Task] = []

    def chunk(self, *, broadcast: Broadcast, sends: list[_Claimed], first_id: int, last_id: int) -> _Chunk:
        max_mps = broadcast.channel.max_mps
        if self.log is None:
            self.log = PostLog(max_mps=max_mps)
        chunk = _Chunk(
            broadcast=broadcast,
            sends=sends,
            runtime=self.runtime,
            first_id=first_id,
            last_id=last_id,
            deadline=self.deadline,
            give_up_at=self.give_up_at,
            log=self.log,
        )
        chunk.on_exhausted = self._continue
        self.chunks.append(chunk)
        return chunk

    async def run(self, first: _Chunk) -> None:
        self.runs.append(asyncio.get_running_loop().create_task(self._run_one(first)))
        errors = []
        # Runs are appended while earlier ones run: wait for each, in order, including those added meanwhile.
        index = 0
        while index < len(self.runs):
            try:
                await self.runs[index]
            except SoftTimeLimitExceeded:
                raise
            except Exception as exc:  # one chunk's bug must not strand the others' sends unrecorded
                errors.append(exc)
            index += 1
        if errors:
            raise errors[0]

    async def _run_one(self, chunk: _Chunk) -> None:
        try:
            await chunk.run()
        finally:
            await chunk._db(chunk.finish)

    def _continue(self) -> None:
        if time.monotonic() < self.deadline - REFILL_STOP_SECONDS:
            self.runs.append(asyncio.get_running_loop().create_task(self._next()))

    async def _next(self) -> None:
        try:
            found = await self.runtime.loop.run_in_executor(
                self.runtime.db, _in_db_thread(functools.partial(_claim_next_on_channel, channel_id=self.channel_id))
            )
        except db.Error:
            return  # the broadcasts' own chunk tasks and wakes take them on
        if found is not None:
            broadcast, sends, first_id, last_id = found
            await self._run_one(self.chunk(broadcast=broadcast, sends=sends, first_id=first_id, last_id=last_id))


def _claim_next_on_channel(*, channel_id: str) -> tuple[Broadcast, list[_Claimed], int, int] | None:
    """The first batch of the channel's longest-running broadcast that has due, unclaimed sends (DB thread)."""
    now = timezone.now()
    running = (
        Broadcast.objects.select_related("channel", "template")
        .filter(channel_id=channel_id, status=BroadcastStatus.IN_PROGRESS)
        .order_by("started_at", "id")[:20]
    )
    for broadcast in running:
        bounds = _due_sends(broadcast_id=broadcast.id, now=now).aggregate(first=Min("id"), last=Max("id"))
        if bounds["first"] is None:
            continue
        sends = _claim(
            broadcast_id=broadcast.id,
            first_id=bounds["first"],
            last_id=bounds["last"],
            now=now,
            limit=chunk_size(max_mps=broadcast.channel.max_mps),
        )
        if sends:
            return broadcast, sends, bounds["first"], bounds["last"]
    return None


def _summarize(chunk: _Chunk) -> ChunkReport:
    report = chunk.report
    report.broadcast_id = chunk.broadcast.id
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


def _after_chunk(*, broadcast_id: str, report: ChunkReport) -> None:
    """Finish the broadcast when nothing is pending; otherwise make sure later work gets woken."""
    if report.stop == "deadline" and report.released:
        broadcast_wake(broadcast_id=broadcast_id, at=timezone.now())
    elif report.wake_at is not None:
        broadcast_wake(broadcast_id=broadcast_id, at=report.wake_at)
    if report.stop in (None, "deadline"):
        broadcast_finalize(broadcast_id=broadcast_id)


def broadcasts_in_progress() -> Iterable[str]:
    return Broadcast.objects.filter(status=BroadcastStatus.IN_PROGRESS).values_list("id", flat=True)
