"""Meta's delivery statuses applied to sends (CONTRACT section 8): forward only, in bulk.

A send moves SENT < DELIVERED < READ, or to FAILED from SENT or DELIVERED; nothing else.
Every UPDATE carries the allowed "from" statuses in its WHERE clause, so a concurrent webhook,
a redelivery or an out-of-order status can never move a send backwards or change it twice.
A body of N statuses costs a fixed number of statements whatever N is: the read of the sends (one index probe
per wamid, a plan that needs no statistics; a redelivery stops there), the lock of their broadcast rows (the lock
order of broadcasts/counts.py), at most one UPDATE per target status, and one UPDATE of the kept counts per
broadcast.

A status whose wamid no send carries yet (the engine records wamids a fraction of a second after Meta's answer,
and a fast webhook can arrive first) is kept as an ``UnmatchedStatus`` and re-applied by the beat task
``broadcasts.unmatched_statuses_retry`` for ``UNMATCHED_KEEP``, then dropped as belonging to no broadcast of ours.
"""

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import connection, transaction
from django.db.models import F, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from broadcasts.counts import broadcasts_lock, counts_add, deltas_of
from broadcasts.models import Send, SendStatus, SuppressionSource, UnmatchedStatus
from broadcasts.notifications import message_events_publish
from broadcasts.suppressions import USER_STOPPED_MARKETING, USER_STOPPED_REASON, suppressions_add_many
from whatsapp.inbound import StatusUpdate, status_update_parse

# Meta's words -> ours. "sent" (and anything unknown) moves nothing: the Graph API's 200 made it SENT.
META_STATUSES = {"delivered": SendStatus.DELIVERED, "read": SendStatus.READ, "failed": SendStatus.FAILED}

# The statuses a send may be in for a move to the key to apply.
ALLOWED_FROM: dict[str, tuple[str, ...]] = {
    SendStatus.DELIVERED: (SendStatus.SENT,),
    SendStatus.READ: (SendStatus.SENT, SendStatus.DELIVERED),
    SendStatus.FAILED: (SendStatus.SENT, SendStatus.DELIVERED),
}

# A status for a wamid no send carries yet is retried this long (the delivery engine records wamids
# within ~0.5 s; minutes cover a slow database too), then dropped as belonging to no broadcast of ours.
UNMATCHED_KEEP = timedelta(minutes=10)
# Statuses re-applied per sweep: one SELECT and a few UPDATEs whatever the number.
UNMATCHED_BATCH = 5000


class StatusMoves(dict):
    """``{status: [moved send ids]}``, plus the wamids of the body that matched no send."""

    def __init__(self, moved: dict[str, list[int]] | None = None, unmatched: list[str] | None = None) -> None:
        super().__init__(moved or {})
        self.unmatched: list[str] = unmatched or []


@dataclass
class _Fold:
    """Everything one body says about one wamid, folded into the single move it implies."""

    delivered_at: datetime | None = None
    read_at: datetime | None = None
    failed_at: datetime | None = None
    error_code: str = ""
    error_title: str = ""
    error_message: str = ""

    @property
    def target(self) -> str:
        # A read message was delivered and did not fail: READ wins over anything else in one body.
        if self.read_at is not None:
            return SendStatus.READ
        if self.failed_at is not None:
            return SendStatus.FAILED
        return SendStatus.DELIVERED


def _error(update: StatusUpdate) -> tuple[str, str, str]:
    """(code, title, message) from ``errors[0]``; the message prefers ``error_data.details``."""
    first = update.first_error
    code = first.code if first is not None else None
    title = first.title[:255] if first is not None else ""
    message = (first.details or first.message) if first is not None else ""
    return (code if code is not None else "unknown")[:64], title, message or title


def _fold(statuses: Iterable[StatusUpdate]) -> dict[str, _Fold]:
    folds: dict[str, _Fold] = {}
    for update in statuses:
        wamid = update.wamid
        target = META_STATUSES.get(update.status)
        if len(wamid) > 128 or target is None:
            continue
        # An unreadable timestamp means "now".
        at = update.timestamp or timezone.now()
        fold = folds.setdefault(wamid, _Fold())
        if target == SendStatus.DELIVERED:
            fold.delivered_at = min(fold.delivered_at or at, at)
        elif target == SendStatus.READ:
            fold.read_at = min(fold.read_at or at, at)
        else:
            fold.failed_at = min(fold.failed_at or at, at)
            fold.error_code, fold.error_title, fold.error_message = _error(update)
    return folds


def _update_postgresql(target: str, items: list[tuple[int, _Fold]], now: datetime) -> list[tuple[int, str]]:
    """One UPDATE ... FROM unnest(arrays) for every send moving to ``target``; returns (moved id, its status before).

    The status before comes from a self-join read in the statement's snapshot: exact, because the caller holds the
    broadcasts' row locks, which every writer of a send's status takes first (broadcasts/counts.py)."""
    table = connection.ops.quote_name(Send._meta.db_table)
    error_sets = ""
    if target == SendStatus.FAILED:
        error_sets = (
            "error_code = v.error_code, error_title = v.error_title, error_message = v.error_message, "
            "error_retryable = false, "
        )
    sql = f"""
        UPDATE {table} AS s SET
            status = %s,
            delivered_at = COALESCE(s.delivered_at, v.delivered_at),
            read_at = COALESCE(s.read_at, v.read_at),
            failed_at = COALESCE(s.failed_at, v.failed_at),
            {error_sets}
            updated_at = %s
        FROM unnest(%s::bigint[], %s::timestamptz[], %s::timestamptz[], %s::timestamptz[],
                    %s::text[], %s::text[], %s::text[])
             AS v(id, delivered_at, read_at, failed_at, error_code, error_title, error_message),
             {table} AS old
        WHERE s.id = v.id AND old.id = s.id AND s.status = ANY(%s)
        RETURNING s.id, old.status
    """
    params = [
        target,
        now,
        [send_id for send_id, _ in items],
        [_delivered_at(target, fold) for _, fold in items],
        [fold.read_at if target == SendStatus.READ else None for _, fold in items],
        [fold.failed_at if target == SendStatus.FAILED else None for _, fold in items],
        [fold.error_code for _, fold in items],
        [fold.error_title for _, fold in items],
        [fold.error_message for _, fold in items],
        list(ALLOWED_FROM[target]),
    ]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return [(row[0], row[1]) for row in cursor.fetchall()]


def _update_portable(target: str, items: list[tuple[int, _Fold]], now: datetime) -> list[tuple[int, str]]:
    """The same moves with the ORM (SQLite demo): one UPDATE per distinct set of values."""
    groups: dict[tuple, list[int]] = defaultdict(list)
    for send_id, fold in items:
        read_at = fold.read_at if target == SendStatus.READ else None
        failed_at = fold.failed_at if target == SendStatus.FAILED else None
        key = (_delivered_at(target, fold), read_at, failed_at, fold.error_code, fold.error_title, fold.error_message)
        groups[key].append(send_id)
    moved: list[tuple[int, str]] = []
    for (delivered_at, read_at, failed_at, code, title, message), ids in groups.items():
        qs = Send.objects.filter(id__in=ids, status__in=ALLOWED_FROM[target])
        before = list(qs.values_list("id", "status"))
        ids_now = [send_id for send_id, _ in before]
        values: dict[str, Any] = {"status": target, "updated_at": now}
        for field, value in (("delivered_at", delivered_at), ("read_at", read_at), ("failed_at", failed_at)):
            if value is not None:
                values[field] = Coalesce(F(field), Value(value))
        if target == SendStatus.FAILED:
            values.update(error_code=code, error_title=title, error_message=message, error_retryable=False)
        Send.objects.filter(id__in=ids_now, status__in=ALLOWED_FROM[target]).update(**values)
        moved.extend(before)
    return moved


def _delivered_at(target: str, fold: _Fold) -> datetime | None:
    # Decision: a READ that arrives without DELIVERED also stamps delivered_at (with the read
    # time), because a read message was necessarily delivered; a later "delivered" is then ignored.
    if target == SendStatus.READ:
        return fold.delivered_at or fold.read_at
    return fold.delivered_at


# One probe of the partial wamid index per wamid of the body. A plain ``message_id = ANY(...)`` of 1,000 wamids is
# planned from the column's statistics: right after a bulk load (none yet) PostgreSQL guesses that it matches most
# of the table and reads all of it (0.5 s at a million sends). LIMIT keeps the planner from flattening the LATERAL
# into that same join. Both statements below are planned the same whatever the statistics say.
_PROBE = """
    FROM unnest(%s::varchar[]) AS w(wamid)
    CROSS JOIN LATERAL (
        SELECT id, message_id, status, broadcast_id FROM broadcasts_send WHERE message_id = w.wamid LIMIT 2
    ) AS s
"""
_SENDS_SQL = f"SELECT s.id, s.message_id, s.status, s.broadcast_id {_PROBE}"


def _sends_find(wamids: list[str]) -> list[tuple[int, str, str, str]]:
    """(id, wamid, status, broadcast_id) of the sends carrying these wamids, read without a lock. A status read
    here may be behind the truth, never ahead of it (statuses only move forward): a send it shows as unable to
    move cannot move, and the UPDATEs' WHERE decides for the others."""
    if connection.vendor != "postgresql":
        return list(
            Send.objects.filter(message_id__in=wamids).values_list("id", "message_id", "status", "broadcast_id")
        )
    with connection.cursor() as cursor:
        cursor.execute(_SENDS_SQL, [wamids])
        return cursor.fetchall()


def _opted_out_record(*, failed: Iterable[tuple[int, _Fold]], moved: Iterable[int]) -> None:
    """A ``failed`` status with 131050 suppresses the number, as the POST's answer does (CONTRACT 8, 11)."""
    moved_ids = set(moved)
    ids = [send_id for send_id, fold in failed if send_id in moved_ids and fold.error_code == USER_STOPPED_MARKETING]
    if ids:
        pairs = Send.objects.filter(id__in=ids).values_list("broadcast__organization_id", "to")
        suppressions_add_many(entries=pairs, source=SuppressionSource.ERROR_131050, reason=USER_STOPPED_REASON)


def sends_apply_statuses(*, statuses: Iterable[StatusUpdate], publish: bool = True) -> StatusMoves:
    """Moves the sends named in Meta's ``statuses[]`` (as ``whatsapp.inbound`` reads them) forward; returns
    ``{status: [moved send ids]}`` (and, in ``.unmatched``, the wamids no send carries).

    Unknown wamids, Meta's "sent", backward moves and repeats are ignored. The outbound
    ``message.*`` events are recorded in the same transaction as the moves (so neither is lost
    without the other) and their delivery is queued after commit.
    """
    folds = _fold(statuses)
    if not folds:
        return StatusMoves()
    now = timezone.now()
    by_target: dict[str, list[tuple[int, _Fold]]] = defaultdict(list)
    found: set[str] = set()
    was_sent: set[int] = set()
    update = _update_postgresql if connection.vendor == "postgresql" else _update_portable
    moved: dict[str, list[int]] = {}
    with transaction.atomic(savepoint=False):
        broadcast_of: dict[int, str] = {}
        for send_id, wamid, current, broadcast_id in _sends_find(list(folds)):
            found.add(wamid)
            fold = folds[wamid]
            if current in ALLOWED_FROM[fold.target]:
                by_target[fold.target].append((send_id, fold))
                broadcast_of[send_id] = broadcast_id
        # Nothing can move (a redelivery, statuses already overtaken): one read, no lock, no write.
        if by_target:
            # The broadcast rows first, in id order (broadcasts/counts.py): concurrent bodies (Meta posts several
            # at once), flushers and cancels of the same broadcast queue behind each other instead of deadlocking,
            # and each UPDATE's "status before" is exact (so "was SENT" below and the counts' deltas are exact,
            # never a duplicate event or a count moved twice).
            broadcasts_lock(broadcast_ids=broadcast_of.values())
        moves: list[tuple[str, str, str]] = []
        # Lower targets first, so events of one body are recorded in status order.
        for target in (SendStatus.DELIVERED, SendStatus.READ, SendStatus.FAILED):
            if by_target.get(target):
                done = update(target, by_target[target], now)
                if done:
                    moved[target] = sorted(send_id for send_id, _ in done)
                    was_sent.update(send_id for send_id, before in done if before == SendStatus.SENT)
                    moves += [(broadcast_of[send_id], before, target) for send_id, before in done]
        counts_add(deltas_of(moves))
        _opted_out_record(failed=by_target.get(SendStatus.FAILED, ()), moved=moved.get(SendStatus.FAILED, ()))
        if publish:
            # A send that jumped SENT -> READ passed through DELIVERED (it has a delivered_at): the
            # customer gets message.delivered before message.read, as for any other message.
            jumped = [i for i in moved.get(SendStatus.READ, ()) if i in was_sent]
            if jumped:
                message_events_publish(send_ids=jumped, status=SendStatus.DELIVERED)
            for target, ids in moved.items():
                message_events_publish(send_ids=ids, status=target)
    unmatched = [wamid for wamid in folds if wamid not in found]
    return StatusMoves(moved, unmatched=unmatched)


def unmatched_statuses_keep(*, statuses: Sequence[StatusUpdate], wamids: set[str]) -> int:
    """Stores the statuses of wamids no send carries yet (Meta's own entries), for the beat task to re-apply."""
    if not wamids:
        return 0
    rows = [
        UnmatchedStatus(message_id=update.wamid, entry=update.raw)
        for update in statuses
        if update.wamid in wamids and update.status in META_STATUSES
    ]
    UnmatchedStatus.objects.bulk_create(rows, batch_size=1000)
    return len(rows)


def unmatched_statuses_retry(*, now: datetime | None = None) -> int:
    """Beat: re-applies kept statuses whose send now has its wamid; drops those kept too long.
    Returns the number of statuses that found their send."""
    now = now or timezone.now()
    UnmatchedStatus.objects.filter(received_at__lt=now - UNMATCHED_KEEP).delete()
    rows = list(UnmatchedStatus.objects.order_by("id").values_list("id", "message_id", "entry")[:UNMATCHED_BATCH])
    if not rows:
        return 0
    updates = [update for _, _, entry in rows if (update := status_update_parse(entry)) is not None]
    with transaction.atomic():
        moved = sends_apply_statuses(statuses=updates)
        still_unmatched = set(moved.unmatched)
        matched = [row_id for row_id, wamid, _ in rows if wamid not in still_unmatched]
        UnmatchedStatus.objects.filter(id__in=matched).delete()
    return len(matched)
