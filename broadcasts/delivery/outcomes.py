"""Outcomes: what Meta answered for each attempt, written to the sends, and when a send is tried again.

- ``outcome_row`` maps one POST's result onto its send (SENT, FAILED, PENDING with a retry time; the retry
  policy is ``retry_delay``), ``cancelled_row`` adjusts rows of a broadcast cancelled meanwhile;
- ``sends_record`` writes a batch of rows with ONE UPDATE (only PENDING sends: a send is final once), moves the
  broadcast's kept counts (broadcasts/counts.py) and publishes their message events in the same transaction;
- the outcome journal keeps final rows in Redis while the database is away, and the sweeper applies it.

A broadcast's own status is not changed here (broadcasts/lifecycle.py does that).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import random
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

import orjson
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone
from redis.exceptions import RedisError

from broadcasts.counts import broadcasts_lock_for_sends, counts_add, deltas_of
from broadcasts.delivery.claims import Claimed
from broadcasts.delivery.outcome_activity import outcomes_activity_add
from broadcasts.models import SendStatus, WaitReason
from broadcasts.notifications import message_events_publish
from broadcasts.rules.identities import Pair, identities_record
from broadcasts.rules.marketing_holds import holds_start_for_failed
from broadcasts.rules.suppressions import suppressions_add_for_failed
from core.backoff import backoff_seconds
from core.metrics import sends_add
from core.redis import redis_client
from whatsapp.client import SendResult
from whatsapp.errors import ErrorClass, GraphError
from whatsapp.payload import MissingVariablesError

logger = logging.getLogger(__name__)


def retry_delay(*, attempts: int) -> float:
    """Exponential backoff with +-25 % jitter, capped: base * 2^(attempts-1)."""
    return backoff_seconds(
        attempts=attempts,
        base=settings.DELIVERY_RETRY_BASE_SECONDS,
        cap=settings.DELIVERY_RETRY_MAX_SECONDS,
        jitter=0.25,
    )


@dataclass(slots=True)
class OutcomeRow:
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
    # Why a send handed back PENDING with a next_attempt_at waits (gates.Admission.deferred's reason).
    wait_reason: str | None = None
    # Meta's contacts[0].wa_id and messages[0].message_status from its 200 (None keeps what is stored).
    wa_id: str | None = None
    meta_status: str | None = None
    # Meta's contacts[0].user_id (the user's BSUID): stored only on a send that has none (a BSUID recipient's own
    # id stays).
    user_id: str | None = None


_RECORD_SQL = """
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
    wait_reason = COALESCE(v.wait_reason, ''),
    wa_id = COALESCE(v.wa_id, s.wa_id),
    meta_status = COALESCE(v.meta_status, s.meta_status),
    user_id = COALESCE(s.user_id, v.user_id),
    updated_at = %s
FROM json_to_recordset(%s::json)
     AS v(id bigint, status varchar, attempts_delta int, next_attempt_at timestamptz, unknown_inc int,
          message_id varchar, error_code varchar, error_title varchar, error_message text, error_retryable boolean,
          sent_at timestamptz, failed_at timestamptz, wait_reason varchar, wa_id varchar, meta_status varchar,
          user_id varchar)
WHERE s.id = v.id AND s.status = 'PENDING'
RETURNING s.id, s.status, s.broadcast_id, s.to
"""


def sends_record(*, rows: list[OutcomeRow], channel_id: str = "") -> dict[str, list[int]]:
    """Write outcomes for leased sends with ONE UPDATE (PostgreSQL) and record their message events with it.

    Only PENDING rows are touched: a send is final once, whatever runs twice. Returns ids per new status.
    The outcome UPDATE, the kept counts (one relative UPDATE per broadcast: every row was PENDING) and the events
    it causes commit together: an event is never lost once its outcome is written, and a failure of any leaves
    all to be written again. The written outcomes are counted in msg_sends_total{channel, outcome, code} once
    committed.
    """
    if not rows:
        return {}
    with transaction.atomic():
        by_status, written = _sends_record(rows=rows, channel_id=channel_id)
        if len(written) != len(rows):
            _answers_keep(rows=rows, written=written)
    _outcomes_count(channel_id=channel_id, rows=rows, written=written)
    return by_status


def _answers_keep(*, rows: list[OutcomeRow], written: list) -> None:
    """Meta's answer is never forgotten: a send its status webhook settled (callback data, status_updates) before
    this write still gets the wa_id and message_status of the answer (same wamid). One UPDATE, only when some
    SENT row found its send no longer PENDING."""
    ids = {row[0] for row in written}
    late = [r for r in rows if r.status == SendStatus.SENT and r.id not in ids and (r.wa_id or r.meta_status)]
    if not late:
        return
    with connection.cursor() as cursor:
        cursor.execute(
            """
            UPDATE broadcasts_send AS s SET
                wa_id = COALESCE(v.wa_id, s.wa_id), meta_status = COALESCE(s.meta_status, v.meta_status),
                user_id = COALESCE(s.user_id, v.user_id)
            FROM unnest(%s::bigint[], %s::varchar[], %s::varchar[], %s::varchar[], %s::varchar[])
                 AS v(id, message_id, wa_id, meta_status, user_id)
            WHERE s.id = v.id AND s.message_id = v.message_id
            RETURNING s.id, s.status, s.broadcast_id, s.to
            """,
            [
                [r.id for r in late],
                [r.message_id for r in late],
                [r.wa_id for r in late],
                [r.meta_status for r in late],
                [r.user_id for r in late],
            ],
        )
        kept = cursor.fetchall()
    _identities_record(rows=late, written=kept)


def _identities_record(*, rows: list[OutcomeRow], written: list) -> None:
    """The (wa_id, BSUID) pairs of Meta's answers (contacts[0]), with the number we sent to: one upsert for the
    batch (rules/identities.py), no statement when no answer carried both."""
    answered = {r.id: (r.user_id, r.wa_id) for r in rows if r.user_id and r.wa_id}
    if answered:
        pairs = [Pair(*answered[i], number=to, broadcast_id=b) for i, _, b, to in written if i in answered]
        identities_record(pairs=pairs)


def _outcomes_count(*, channel_id: str, rows: list[OutcomeRow], written: list) -> None:
    """One dict count per written row, then one counter ``inc`` per (outcome, code) of the batch."""
    if len(written) != len(rows):
        ids = {row[0] for row in written}  # (id, new status, broadcast id) of each row the UPDATE wrote
        rows = [r for r in rows if r.id in ids]
    counts: dict[tuple[str, str], int] = {}
    for r in rows:
        if r.status == SendStatus.SENT:
            key = ("sent", "")
        elif r.status == SendStatus.FAILED:
            key = ("failed", r.error_code or "")
        elif r.status == SendStatus.PENDING and r.error_code:
            key = ("unknown" if r.unknown_inc else "retried", r.error_code)
        else:
            continue  # handed back unposted, or cancelled: no attempt to count
        counts[key] = counts.get(key, 0) + 1
    if counts:
        sends_add(channel_id=channel_id, counts=counts)


def _sends_record(*, rows: list[OutcomeRow], channel_id: str) -> tuple[dict[str, list[int]], list]:
    now = timezone.now()
    # Lock order (broadcasts/counts.py): the broadcast row before its sends.
    broadcasts_lock_for_sends(send_ids=[r.id for r in rows])
    # The rows as one JSON text (orjson, in C; a dataclass serializes as is): Django binds parameters
    # client-side, quoting every placeholder or array element in Python, which cost more than the UPDATE.
    # Every write sets wait_reason (NULL reads as ''): a send that moves on waits for nothing.
    with connection.cursor() as cursor:
        cursor.execute(_RECORD_SQL, [now, orjson.dumps(rows).decode()])
        written = cursor.fetchall()
    counts_add(deltas_of((broadcast_id, SendStatus.PENDING, status) for _, status, broadcast_id, _ in written))
    _failed_effects_apply(rows=rows, written=written, now=now)
    _identities_record(rows=rows, written=written)
    by_status: dict[str, list[int]] = {}
    for send_id, status, _, _ in written:
        by_status.setdefault(status, []).append(send_id)
    for status in (SendStatus.SENT, SendStatus.FAILED):
        if by_status.get(status):
            message_events_publish(send_ids=by_status[status], status=str(status))
    outcomes_activity_add(rows=rows, written=written, channel_id=channel_id, now=now)
    return by_status, written


# Failures decided without a POST (the claim's attempt is given back): missing variables, the consent gate's and the
# frequency cap's (the only one of them ``retryable``).
NOT_POSTED_CODES = frozenset({"missing_variables", "opted_out", "frequency_capped"})


def _failed_effects_apply(*, rows: list[OutcomeRow], written: list, now: datetime) -> None:
    """What a failure starts besides the send's own row (131049 holds the number from the answer's time, 131050
    suppresses it: the rules' own functions, which a ``failed`` status webhook calls too), in the transaction that
    records the failure. No query unless a written FAILED row has one of those codes."""
    failed = {send_id for send_id, status, *_ in written if status == SendStatus.FAILED}
    if failed:
        failures = [(r.id, r.error_code, r.failed_at or now) for r in rows if r.id in failed]
        holds_start_for_failed(failures=failures)
        suppressions_add_for_failed(failures=failures)


def outcome_row(*, send: Claimed, result: SendResult, now: datetime) -> OutcomeRow:
    """Map one POST's result onto the send (attempts were already counted by the claim).

    A cancelled broadcast's transient failure is not tried again, so it would end FAILED with its error there
    (CANCELLED means "never posted": that send was). The row says PENDING; see cancelled_row.
    """
    if result.ok:
        return OutcomeRow(
            id=send.id,
            status=SendStatus.SENT,
            message_id=result.message_id,
            wa_id=result.wa_id,
            meta_status=result.meta_status,
            user_id=result.user_id,
            sent_at=now,
            error_code="",
            error_title="",
            error_message="",
            error_retryable=None,
        )
    error = result.error
    assert error is not None
    if error.code in NOT_POSTED_CODES:
        # Never POSTed: the claim's attempt is given back.
        return OutcomeRow(
            id=send.id,
            status=SendStatus.FAILED,
            attempts_delta=-1,
            failed_at=now,
            error_code=error.code,
            error_title=error.title,
            error_message=error.message,
            error_retryable=error.retryable,
        )
    fields = {
        "error_code": error.code[:64],
        "error_title": error.title[:255],
        "error_message": error.message,
        "error_retryable": error.retryable,
        "unknown_inc": 1 if result.unknown else 0,
    }
    if error.pauses_broadcast:
        # Account- or template-level (132015/132016): counted (attempts = POSTs made), not failed: the send waits
        # for resume, its error shown meanwhile.
        return OutcomeRow(id=send.id, status=SendStatus.PENDING, **fields)
    if error.error_class is ErrorClass.TRANSIENT and send.attempts < settings.DELIVERY_MAX_ATTEMPTS:
        delay = retry_delay(attempts=send.attempts)
        if result.unknown:
            # Meta may have taken it: not again before its status webhook had time to settle it (docs/rules.md).
            delay = max(delay, settings.DELIVERY_UNKNOWN_GRACE_SECONDS)
        at = now + timedelta(seconds=delay)
        return OutcomeRow(
            id=send.id, status=SendStatus.PENDING, next_attempt_at=at, wait_reason=WaitReason.RETRY, **fields
        )
    return OutcomeRow(id=send.id, status=SendStatus.FAILED, failed_at=now, **fields)


def cancelled_row(row: OutcomeRow, *, now: datetime) -> OutcomeRow:
    """A cancelled broadcast's row: a send handed back unposted becomes CANCELLED; a posted one that would wait
    for another attempt ends FAILED with its error (CANCELLED counts exactly the sends never posted)."""
    if row.status != SendStatus.PENDING:
        return row
    if not row.posted:
        return dataclasses.replace(row, status=SendStatus.CANCELLED, next_attempt_at=None)
    return dataclasses.replace(row, status=SendStatus.FAILED, next_attempt_at=None, failed_at=now)


def missing_variables_result(exc: MissingVariablesError) -> SendResult:
    """The result of a send whose template variables are missing: never POSTed, failed for good."""
    return SendResult(
        error=GraphError(
            code="missing_variables",
            title="Missing variables",
            message=str(exc),
            http_status=None,
            error_class=ErrorClass.PERMANENT,
        )
    )


# --- the outcome journal ----------------------------------------------------------------------------------
# A broadcast run puts Meta's final answers (SENT, FAILED) in this Redis hash every JOURNAL_INTERVAL_SECONDS as
# they arrive (run.py), and drops them once its outcome write commits: a worker killed between two writes loses
# at most ~0.1 s of answers, not 0.5 s. A run whose outcome write fails (PostgreSQL away) keeps its rows in memory
# and tries again; it also journals them at once, so that they survive the run giving up at its chunk task's
# time limit. The sweeper applies the hash before it takes back expired leases, so a
# send Meta accepted is never posted again. Applying a row twice changes nothing (only PENDING sends are written).

JOURNAL_KEY = "delivery:journal"
# The sweeper leaves younger entries alone: a live run drops its own at its next outcome write (every 0.5 s), and
# a dead run's sends are taken back only when their lease expires, much later than this after their answers.
JOURNAL_MIN_AGE_SECONDS = 2.0
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
    "wa_id",
    "meta_status",
    "user_id",
)


def journal_put(rows: list[OutcomeRow], *, channel_id: str = "") -> str | None:
    """Keep the final rows in Redis; returns the entry's key, or None (nothing final, or Redis away too)."""
    final = [r for r in rows if r.status in (SendStatus.SENT, SendStatus.FAILED)]
    if not final:
        return None
    client = redis_client()
    entry = {
        "at": time.time(),
        "channel": channel_id,
        "rows": [{name: getattr(r, name) for name in _JOURNAL_FIELDS} for r in final],
    }
    key = f"{os.getpid()}:{time.monotonic_ns()}:{random.getrandbits(32):08x}"
    try:
        client.hset(JOURNAL_KEY, key, orjson.dumps(entry))
    except RedisError:
        return None
    return key


def journal_drop(keys: list[str]) -> None:
    """Those entries were written to the database by their run after all."""
    if keys:
        with contextlib.suppress(RedisError):
            redis_client().hdel(JOURNAL_KEY, *keys)


def journal_apply() -> int:
    """Write every journaled outcome to the database (sweeper; before expired leases are taken back)."""
    client = redis_client()
    entries = client.hgetall(JOURNAL_KEY)
    applied = 0
    young = time.time() - JOURNAL_MIN_AGE_SECONDS
    for key, raw in entries.items():
        entry = orjson.loads(raw)
        if entry["at"] > young:
            continue
        at = datetime.fromtimestamp(entry["at"], tz=timezone.get_current_timezone())
        rows = [
            OutcomeRow(
                **item,
                sent_at=at if item["status"] == SendStatus.SENT else None,
                failed_at=at if item["status"] == SendStatus.FAILED else None,
            )
            for item in entry["rows"]
        ]
        written = sends_record(rows=rows, channel_id=entry.get("channel", ""))
        applied += sum(len(ids) for ids in written.values())
        client.hdel(JOURNAL_KEY, key)
    if applied:
        logger.warning("delivery: %d outcomes written from the journal", applied)
    return applied
