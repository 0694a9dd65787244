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

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from dataclasses import field as dc_field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import orjson
from django.db import connection, transaction
from django.db.models import F, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from broadcasts import pricing
from broadcasts.counts import broadcasts_lock, counts_add, deltas_of
from broadcasts.marketing_holds import holds_start, is_marketing_limit
from broadcasts.models import Send, SendStatus, SuppressionSource, UnmatchedStatus
from broadcasts.notifications import message_events_publish
from broadcasts.phones import phone_region
from broadcasts.suppressions import USER_STOPPED_MARKETING, USER_STOPPED_REASON, suppressions_add_many
from core.metrics import sends_add
from whatsapp.errors import status_failure_classify
from whatsapp.inbound import StatusUpdate, status_update_parse
from whatsapp.payload import callback_parse

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
    # As an answer to the POST with that code would say (whatsapp/errors.py's table, CONTRACT 8).
    error_retryable: bool = False
    # The change's metadata.phone_number_id ("" when unknown): a send of another channel is not moved.
    phone_number_id: str = ""

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


def _failure_retryable(update: StatusUpdate) -> bool:
    """``retryable`` of a failed status: its ``errors[0].code`` classed as an answer to the POST with that code
    would be (whatsapp/errors.py), so a send's error reads the same whichever way it arrived."""
    first = update.first_error
    return status_failure_classify(first.code if first is not None else None)[1]


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
        fold.phone_number_id = fold.phone_number_id or update.phone_number_id
        if target == SendStatus.DELIVERED:
            fold.delivered_at = min(fold.delivered_at or at, at)
        elif target == SendStatus.READ:
            fold.read_at = min(fold.read_at or at, at)
        else:
            fold.failed_at = min(fold.failed_at or at, at)
            fold.error_code, fold.error_title, fold.error_message = _error(update)
            fold.error_retryable = _failure_retryable(update)
    return folds


def _update_postgresql(
    target: str, items: list[tuple[int, _Fold]], now: datetime, bill: _BillRun | None = None
) -> list[tuple[int, str]]:
    """One UPDATE ... FROM json_to_recordset(rows) for every send moving to ``target``; returns (moved id, its status
    before).

    The status before comes from a self-join read in the statement's snapshot: exact, because the caller holds the
    broadcasts' row locks, which every writer of a send's status takes first (broadcasts/counts.py).
    With ``bill``, the same statement stores the moved sends' pricing and bills them once (CONTRACT 12): no second
    write of the rows; what it billed goes into ``bill``.
    The rows travel as one JSON text (orjson, in C): Django's client-side binding quotes every element of an array
    parameter in Python, which cost more than the statement itself for a 1,000-status body."""
    table = connection.ops.quote_name(Send._meta.db_table)
    error_sets = ""
    if target == SendStatus.FAILED:
        error_sets = (
            "error_code = v.error_code, error_title = v.error_title, error_message = v.error_message, "
            "error_retryable = v.error_retryable, "
        )
    picked = [bill.bills.get(send_id) for send_id, _ in items] if bill is not None else []
    billing = any(b is not None for b in picked)
    bill_sets = bill_columns = bill_returning = ""
    bill_params: list[Any] = []
    rows = [_move_row(target, send_id, fold) for send_id, fold in items]
    if billing:
        # Billed only on reaching DELIVERED or READ and only once; a FAILED move stores the pricing alone.
        when = "v.billable AND s.billed_at IS NULL" if target in _BILLED_STATUSES else "false"
        bill_sets = (
            "pricing = COALESCE((%s::text[])[v.pricing]::jsonb, s.pricing), "
            f"price = CASE WHEN {when} THEN v.price ELSE s.price END, "
            f"billed_at = CASE WHEN {when} THEN %s::timestamptz ELSE s.billed_at END, "
        )
        distinct, positions = _pricing_positions(picked)
        bill_params = [distinct, now]
        bill_columns = ", pricing int, billable boolean, price numeric"
        bill_returning = ", s.broadcast_id, s.price, old.billed_at IS NULL AND s.billed_at IS NOT NULL"
        for row, b, position in zip(rows, picked, positions, strict=True):
            if b is not None:
                row["billable"] = b.billable
                if position is not None:
                    row["pricing"] = position
                if b.price is not None:
                    row["price"] = str(b.price)
    sql = f"""
        UPDATE {table} AS s SET
            status = %s,
            delivered_at = COALESCE(s.delivered_at, v.delivered_at),
            read_at = COALESCE(s.read_at, v.read_at),
            failed_at = COALESCE(s.failed_at, v.failed_at),
            {error_sets}
            {bill_sets}
            updated_at = %s
        FROM json_to_recordset(%s::json)
             AS v(id bigint, delivered_at timestamptz, read_at timestamptz, failed_at timestamptz, error_code text,
                  error_title text, error_message text, error_retryable boolean{bill_columns}),
             {table} AS old
        WHERE s.id = v.id AND old.id = s.id AND s.status = ANY(%s)
        RETURNING s.id, old.status{bill_returning}
    """
    params = [target, *bill_params, now, orjson.dumps(rows).decode(), list(ALLOWED_FROM[target])]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        returned = cursor.fetchall()
    if billing:
        assert bill is not None
        for row in returned:
            if row[0] in bill.bills:
                bill.applied.add(row[0])
                if row[4] and row[3] is not None:
                    bill.amounts[row[2]] += row[3]
    return [(row[0], row[1]) for row in returned]


def _move_row(target: str, send_id: int, fold: _Fold) -> dict[str, Any]:
    """One send's values for the move's UPDATE (absent keys read as NULL)."""
    row: dict[str, Any] = {"id": send_id}
    delivered_at = _delivered_at(target, fold)
    if delivered_at is not None:
        row["delivered_at"] = delivered_at
    if target == SendStatus.READ and fold.read_at is not None:
        row["read_at"] = fold.read_at
    if target == SendStatus.FAILED:
        row.update(
            failed_at=fold.failed_at,
            error_code=fold.error_code,
            error_title=fold.error_title,
            error_message=fold.error_message,
            error_retryable=fold.error_retryable,
        )
    return row


def _update_portable(
    target: str, items: list[tuple[int, _Fold]], now: datetime, bill: _BillRun | None = None
) -> list[tuple[int, str]]:
    """The same moves with the ORM (SQLite demo): one UPDATE per distinct set of values (the bill follows apart)."""
    groups: dict[tuple, list[int]] = defaultdict(list)
    for send_id, fold in items:
        read_at = fold.read_at if target == SendStatus.READ else None
        failed_at = fold.failed_at if target == SendStatus.FAILED else None
        key = (
            _delivered_at(target, fold),
            read_at,
            failed_at,
            fold.error_code,
            fold.error_title,
            fold.error_message,
            fold.error_retryable,
        )
        groups[key].append(send_id)
    moved: list[tuple[int, str]] = []
    for (delivered_at, read_at, failed_at, code, title, message, retryable), ids in groups.items():
        qs = Send.objects.filter(id__in=ids, status__in=ALLOWED_FROM[target])
        before = list(qs.values_list("id", "status"))
        ids_now = [send_id for send_id, _ in before]
        values: dict[str, Any] = {"status": target, "updated_at": now}
        for field, value in (("delivered_at", delivered_at), ("read_at", read_at), ("failed_at", failed_at)):
            if value is not None:
                values[field] = Coalesce(F(field), Value(value))
        if target == SendStatus.FAILED:
            values.update(error_code=code, error_title=title, error_message=message, error_retryable=retryable)
        Send.objects.filter(id__in=ids_now, status__in=ALLOWED_FROM[target]).update(**values)
        moved.extend(before)
    return moved


def _failed_holds_start(*, items: list[tuple[int, _Fold]], done: list[tuple[int, str]]) -> None:
    """Sends a ``failed`` status moved to FAILED with Meta's per-user marketing limit (131049) hold their number
    from the status's timestamp (broadcasts/marketing_holds.py), in the same transaction. Nothing otherwise."""
    held = [(send_id, fold.failed_at) for send_id, fold in items if is_marketing_limit(fold.error_code)]
    if held:
        moved = {send_id for send_id, _ in done}
        holds_start(failures=[(send_id, at) for send_id, at in held if send_id in moved and at is not None])


def _delivered_at(target: str, fold: _Fold) -> datetime | None:
    # Decision: a READ that arrives without DELIVERED also stamps delivered_at (with the read
    # time), because a read message was necessarily delivered; a later "delivered" is then ignored.
    if target == SendStatus.READ:
        return fold.delivered_at or fold.read_at
    return fold.delivered_at


# One probe of the partial wamid index per wamid of the body. A plain ``message_id = ANY(...)`` of 1,000 wamids is
# planned from the column's statistics: right after a bulk load (none yet) PostgreSQL guesses that it matches most
# of the table and reads all of it (0.5 s at a million sends). LIMIT keeps the planner from flattening the LATERAL
# into that same join. The channel of each broadcast found (a body names one or two) comes in the same statement,
# one primary-key probe per distinct broadcast, for the channel check. Planned the same whatever the statistics say.
_SENDS_SQL = """
    WITH s AS MATERIALIZED (
        SELECT s.*
        FROM json_array_elements_text(%s::json) AS w(wamid)
        CROSS JOIN LATERAL (
            SELECT id, message_id, status, broadcast_id, "to", pricing, billed_at IS NOT NULL AS billed
            FROM broadcasts_send WHERE message_id = w.wamid LIMIT 2
        ) AS s
    ), ch AS (
        SELECT d.broadcast_id, c.phone_number_id
        FROM (SELECT DISTINCT broadcast_id FROM s) AS d
        CROSS JOIN LATERAL (
            SELECT c.phone_number_id FROM broadcasts_broadcast AS b
            JOIN templates_registry_channel AS c ON c.id = b.channel_id
            WHERE b.id = d.broadcast_id LIMIT 1
        ) AS c
    )
    SELECT s.id, s.message_id, s.status, s.broadcast_id, s."to", s.pricing, s.billed, ch.phone_number_id
    FROM s LEFT JOIN ch ON ch.broadcast_id = s.broadcast_id
"""


def _sends_find(wamids: list[str]) -> list[tuple[int, str, str, str, str, Any, bool, str | None]]:
    """(id, wamid, status, broadcast_id, to, pricing, billed, the channel's phone_number_id) of the sends carrying
    these wamids, read without a lock. A status read here may be behind the truth, never ahead of it (statuses only
    move forward): a send it shows as unable to move cannot move, and the UPDATEs' WHERE decides for the others."""
    if not wamids:
        return []
    if connection.vendor != "postgresql":
        return [
            (*row[:6], row[6] is not None, row[7])
            for row in Send.objects.filter(message_id__in=wamids).values_list(
                "id",
                "message_id",
                "status",
                "broadcast_id",
                "to",
                "pricing",
                "billed_at",
                "broadcast__channel__phone_number_id",
            )
        ]
    with connection.cursor() as cursor:
        cursor.execute(_SENDS_SQL, [orjson.dumps(wamids).decode()])
        return [_decoded(row, 5) for row in cursor.fetchall()]


def _decoded(row: tuple, at: int) -> tuple:
    """The row with its jsonb column ``at`` decoded: Django has psycopg hand jsonb over as text, decoded here so
    that a repeated pricing compares equal."""
    value = row[at]
    return (*row[:at], orjson.loads(value) if isinstance(value, str) else value, *row[at + 1 :])


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
    statuses = list(statuses)
    settled: list[int] = []
    known: dict[str, tuple[int, str, str, str, str, Any, bool]] = {}
    if any(update.biz_opaque_callback_data for update in statuses):
        # (The webhook's own transaction holds this and the moves below together; a settle alone is sound too.)
        with transaction.atomic(savepoint=False):
            match = statuses_match(statuses, publish=publish)
        statuses, settled, known = match.statuses, match.settled, match.known
    folds = _fold(statuses)
    pricing_of = _pricing_fold(statuses)
    if not folds and not pricing_of:
        return StatusMoves({SendStatus.SENT: settled} if settled else None)
    now = timezone.now()
    by_target: dict[str, list[tuple[int, _Fold]]] = defaultdict(list)
    found: set[str] = set()
    was_sent: set[int] = set()
    update = _update_postgresql if connection.vendor == "postgresql" else _update_portable
    moved: dict[str, list[int]] = {}
    with transaction.atomic(savepoint=False):
        broadcast_of: dict[int, str] = {}
        bills: list[_Bill] = []
        # Sends statuses_match found by callback data are known already (channel checked); the rest by wamid.
        found_rows = _sends_find([w for w in folds.keys() | pricing_of if w not in known])
        found.update(row[1] for row in found_rows)
        # The channel check (CONTRACT 8): a status whose metadata names another number than the send's channel
        # (read with the send) moves and bills nothing, when it could move the send.
        rows = [
            row[:7]
            for row in found_rows
            if not (
                row[1] in folds
                and folds[row[1]].phone_number_id
                and row[2] in ALLOWED_FROM[folds[row[1]].target]
                and row[7] != folds[row[1]].phone_number_id
            )
        ]
        if known:
            found.update(known)
            rows += known.values()
        for send_id, wamid, current, broadcast_id, to, stored, billed in rows:
            fold = folds.get(wamid)
            if fold is not None and current in ALLOWED_FROM[fold.target]:
                by_target[fold.target].append((send_id, fold))
                broadcast_of[send_id] = broadcast_id
            bill = _bill_of(send_id, to, current, stored, billed, fold, pricing_of.get(wamid))
            if bill is not None:
                bills.append(bill)
                broadcast_of[send_id] = broadcast_id
        _bills_price(bills)
        # Nothing can move (a redelivery, statuses already overtaken): one read, no lock, no write.
        if by_target or bills:
            # The broadcast rows first, in id order (broadcasts/counts.py): concurrent bodies (Meta posts several
            # at once), flushers and cancels of the same broadcast queue behind each other instead of deadlocking,
            # and each UPDATE's "status before" is exact (so "was SENT" below and the counts' deltas are exact,
            # never a duplicate event or a count moved twice).
            broadcasts_lock(broadcast_ids=broadcast_of.values())
        moves: list[tuple[str, str, str]] = []
        # Lower targets first, so events of one body are recorded in status order.
        run = _BillRun(bills={b.send_id: b for b in bills}) if bills else None
        for target in (SendStatus.DELIVERED, SendStatus.READ, SendStatus.FAILED):
            if by_target.get(target):
                done = update(target, by_target[target], now, run)
                if done:
                    if target == SendStatus.FAILED:
                        _failed_holds_start(items=by_target[target], done=done)
                    moved[target] = sorted(send_id for send_id, _ in done)
                    was_sent.update(send_id for send_id, before in done if before == SendStatus.SENT)
                    moves += [(broadcast_of[send_id], before, target) for send_id, before in done]
        counts_add(deltas_of(moves))
        if run is not None:
            # What the moves did not carry (sends that did not move: a pricing alone, a late bill).
            rest = [b for b in bills if b.send_id not in run.applied]
            if rest:
                _bills_apply(rest, now, run.amounts)
            pricing.billed_add(run.amounts)
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
    if settled:
        moved[SendStatus.SENT] = settled
    return StatusMoves(moved, unmatched=unmatched)


# --- pricing and the bill (CONTRACT 12) ------------------------------------------------------------------------


def _pricing_fold(statuses: Iterable[StatusUpdate]) -> dict[str, dict[str, Any]]:
    """Meta's ``pricing`` object by wamid: the last one of the body (Meta repeats it on sent, delivered, read)."""
    out: dict[str, dict[str, Any]] = {}
    for update in statuses:
        if update.pricing is not None and len(update.wamid) <= 128:
            out[update.wamid] = update.pricing
    return out


@dataclass(slots=True)
class _Bill:
    """A send whose pricing is to be stored, and which may be billed now (the UPDATE's WHERE has the last word)."""

    send_id: int
    to: str
    pricing: dict[str, Any] | None  # to store (None: keep the stored one)
    billable: bool  # Meta bills it, by the body's pricing or the stored one
    category: str | None  # our category of Meta's pricing.category
    price: Decimal | None = None  # at the card in force now, for the send's country and that category


@dataclass(slots=True)
class _BillRun:
    """The bills of one body, and what the statements applied of them."""

    bills: dict[int, _Bill]
    applied: set[int] = dc_field(default_factory=set)
    amounts: dict[str, Decimal] = dc_field(default_factory=lambda: defaultdict(Decimal))


_BILLED_STATUSES = (SendStatus.DELIVERED, SendStatus.READ)


def _bill_of(
    send_id: int,
    to: str,
    current: str,
    stored: Any,
    billed: bool,
    fold: _Fold | None,
    given: dict[str, Any] | None,
) -> _Bill | None:
    """What this body changes of a send's pricing and bill, or None when nothing (a redelivery costs no write)."""
    new_pricing = given if given is not None and given != stored else None
    if billed:
        return _Bill(send_id, to, new_pricing, False, None) if new_pricing is not None else None
    effective = given if given is not None else stored
    # It may be DELIVERED or READ once this body is applied: what the read says, or where the body moves it.
    reaches = current in _BILLED_STATUSES or (fold is not None and fold.target in _BILLED_STATUSES)
    billable = reaches and pricing.pricing_billable(effective)
    if new_pricing is None and not billable:
        return None
    return _Bill(send_id, to, new_pricing, billable, pricing.pricing_category(effective) if billable else None)


def _pricing_positions(bills: Sequence[_Bill | None]) -> tuple[list[str], list[int | None]]:
    """The distinct pricing objects of the bills as JSON texts, and each bill's 1-based position among them (None:
    keep the stored one). A body repeats the same few objects: a thousand JSON texts would cost more to send (each
    quoted into the array) than the whole UPDATE."""
    distinct: dict[str, int] = {}
    positions: list[int | None] = []
    for b in bills:
        if b is None or b.pricing is None:
            positions.append(None)
            continue
        text = orjson.dumps(b.pricing, option=orjson.OPT_SORT_KEYS).decode()
        positions.append(distinct.setdefault(text, len(distinct) + 1))
    return list(distinct), positions


def _bills_price(bills: list[_Bill]) -> None:
    """Price the billable ones at the card in force now (its id read here; its prices cached per id)."""
    if not any(b.billable for b in bills):
        return
    card = pricing.rate_card_current()
    if card is None:
        return
    table = pricing.card_prices(card.id)
    for b in bills:
        if b.billable and b.category is not None:
            b.price = pricing.unit_price(table, country=phone_region(b.to), category=b.category)


def _bills_apply(bills: list[_Bill], now: datetime, amounts: dict[str, Decimal]) -> None:
    """Store the pricing of sends that did not move, and bill, once, those that are DELIVERED or READ and billable
    (null price when the card has none); adds what it billed to ``amounts``. One UPDATE, under the broadcasts' row
    locks the caller holds (so the "billed before" of the self-join is exact and a send is billed once)."""
    if connection.vendor != "postgresql":
        _bills_apply_portable(bills, now, amounts)
        return
    table_name = connection.ops.quote_name(Send._meta.db_table)
    sql = f"""
        UPDATE {table_name} AS s SET
            pricing = COALESCE((%s::text[])[v.pricing]::jsonb, s.pricing),
            price = CASE WHEN v.billable AND s.billed_at IS NULL AND s.status = ANY(%s) THEN v.price ELSE s.price END,
            billed_at = CASE WHEN v.billable AND s.billed_at IS NULL AND s.status = ANY(%s) THEN %s
                             ELSE s.billed_at END
        FROM unnest(%s::bigint[], %s::int[], %s::boolean[], %s::numeric[]) AS v(id, pricing, billable, price),
             {table_name} AS old
        WHERE s.id = v.id AND old.id = s.id
        RETURNING s.broadcast_id, s.price, old.billed_at IS NULL AND s.billed_at IS NOT NULL
    """
    statuses = list(_BILLED_STATUSES)
    distinct, positions = _pricing_positions(bills)
    params = [
        distinct,
        statuses,
        statuses,
        now,
        [b.send_id for b in bills],
        positions,
        [b.billable for b in bills],
        [b.price for b in bills],
    ]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        for broadcast_id, price, billed_now in cursor.fetchall():
            if billed_now and price is not None:
                amounts[broadcast_id] += price


def _bills_apply_portable(bills: list[_Bill], now: datetime, amounts: dict[str, Decimal]) -> None:
    """The same with the ORM, one UPDATE per send (SQLite demo)."""
    for b in bills:
        if b.pricing is not None:
            Send.objects.filter(id=b.send_id).update(pricing=b.pricing)
        if b.billable:
            billed = Send.objects.filter(id=b.send_id, billed_at__isnull=True, status__in=_BILLED_STATUSES)
            row = billed.values_list("broadcast_id", flat=True).first()
            if row is not None and billed.update(price=b.price, billed_at=now) and b.price is not None:
                amounts[row] += b.price


def unmatched_statuses_keep(*, statuses: Sequence[StatusUpdate], wamids: set[str]) -> int:
    """Stores the statuses of wamids no send carries yet (Meta's own entries), for the beat task to re-apply."""
    if not wamids:
        return 0
    rows = [
        # The change's phone_number_id rides along (not Meta's own key), so the retry checks the channel too.
        UnmatchedStatus(message_id=update.wamid, entry={**update.raw, KEPT_PHONE_NUMBER_ID: update.phone_number_id})
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
    updates = [
        update
        for _, _, entry in rows
        if (update := status_update_parse(entry, phone_number_id=_kept_phone_number_id(entry))) is not None
    ]
    with transaction.atomic():
        moved = sends_apply_statuses(statuses=updates)
        still_unmatched = set(moved.unmatched)
        matched = [row_id for row_id, wamid, _ in rows if wamid not in still_unmatched]
        UnmatchedStatus.objects.filter(id__in=matched).delete()
    return len(matched)


# --- matching: callback data first, then wamid; never another channel's (CONTRACT 6, 8) ---------------------------
# Every POST carries its send's reference as biz_opaque_callback_data ("<broadcast id>:<index>", whatsapp/payload.py)
# and Meta echoes it in each status of that message. A status carrying one of ours is matched by it, whatever its
# wamid: that finds a send whose answer was lost (timeout, worker killed), and settles it. A status whose
# metadata.phone_number_id is not its send's channel changes nothing. All of it costs a fixed number of statements
# per body: one probe per reference (the unique (broadcast, index) index), one read of the broadcasts' channels,
# and one UPDATE for the sends settled.

KEPT_PHONE_NUMBER_ID = "_phone_number_id"
# Meta's statuses that prove it took a message (anything it reports on a message it has).
_PROOF_STATUSES = frozenset({"sent", "delivered", "read", "failed"})


def _kept_phone_number_id(entry: Any) -> str:
    value = entry.get(KEPT_PHONE_NUMBER_ID) if isinstance(entry, dict) else None
    return value if isinstance(value, str) else ""


# The references as (ordinal of the broadcast id, index) pairs: a body names one or two broadcasts, so sending each id
# once (not once per status) keeps the parameters small; the pairs travel as one JSON text. The broadcasts' channels
# (channel check, metrics) come in the same statement (one primary-key probe per broadcast), and so do the columns
# the bill needs (pricing, billed): the whole match and the bill's read are this one statement.
_CALLBACK_SQL = """
    WITH ch AS MATERIALIZED (
        SELECT u.n, c.channel_id, c.phone_number_id
        FROM unnest(%s::varchar[]) WITH ORDINALITY AS u(id, n)
        CROSS JOIN LATERAL (
            SELECT b.channel_id, c.phone_number_id FROM broadcasts_broadcast AS b
            JOIN templates_registry_channel AS c ON c.id = b.channel_id
            WHERE b.id = u.id LIMIT 1
        ) AS c
    )
    SELECT s.id, s.broadcast_id, s."index", s.status, s.message_id, s.unknown_outcomes, s."to", s.pricing, s.billed,
           ch.channel_id, ch.phone_number_id
    FROM json_to_recordset(%s::json) AS r(b int, i int)
    CROSS JOIN LATERAL (
        SELECT id, broadcast_id, "index", status, message_id, unknown_outcomes, "to", pricing,
               billed_at IS NOT NULL AS billed
        FROM broadcasts_send
        WHERE broadcast_id = (%s::varchar[])[r.b] AND "index" = r.i LIMIT 1
    ) AS s
    LEFT JOIN ch ON ch.n = r.b
"""


def _sends_by_callback(refs: list[tuple[str, int]]) -> list[tuple]:
    """(id, broadcast_id, index, status, message_id, unknown_outcomes, to, pricing, billed, channel_id,
    phone_number_id) of the sends these references name."""
    by_broadcast: dict[str, list[int]] = defaultdict(list)
    for broadcast_id, index in refs:
        by_broadcast[broadcast_id].append(index)
    if connection.vendor != "postgresql":
        rows: list[tuple] = []
        for broadcast_id, indexes in by_broadcast.items():
            rows += [
                (*row[:8], row[8] is not None, *row[9:])
                for row in Send.objects.filter(broadcast_id=broadcast_id, index__in=indexes).values_list(
                    "id",
                    "broadcast_id",
                    "index",
                    "status",
                    "message_id",
                    "unknown_outcomes",
                    "to",
                    "pricing",
                    "billed_at",
                    "broadcast__channel_id",
                    "broadcast__channel__phone_number_id",
                )
            ]
        return rows
    ids = list(by_broadcast)
    pairs = [
        {"b": n, "i": index} for n, broadcast_id in enumerate(ids, start=1) for index in by_broadcast[broadcast_id]
    ]
    with connection.cursor() as cursor:
        cursor.execute(_CALLBACK_SQL, [ids, orjson.dumps(pairs).decode(), ids])
        return [_decoded(row, 7) for row in cursor.fetchall()]


def _settleable(status: str, message_id: str | None, unknown_outcomes: int) -> bool:
    """A send whose outcome is unknown to us although Meta may have its message: PENDING (its answer lost or not
    written yet), or FAILED by the engine after an attempt whose outcome was unknown (no wamid: never SENT)."""
    return status == SendStatus.PENDING or (status == SendStatus.FAILED and message_id is None and unknown_outcomes > 0)


_SETTLE_SQL = """
    UPDATE broadcasts_send AS s SET
        status = 'SENT', message_id = COALESCE(s.message_id, v.wamid), sent_at = COALESCE(s.sent_at, v.sent_at),
        wa_id = COALESCE(s.wa_id, NULLIF(v.wa_id, '')),
        lease_expires_at = NULL, posting_at = NULL, next_attempt_at = NULL, failed_at = NULL,
        error_code = '', error_title = '', error_message = '', error_retryable = NULL, updated_at = %s
    FROM unnest(%s::bigint[], %s::varchar[], %s::timestamptz[], %s::varchar[]) AS v(id, wamid, sent_at, wa_id),
         broadcasts_send AS old
    WHERE s.id = v.id AND old.id = s.id
      AND (s.status = 'PENDING' OR (s.status = 'FAILED' AND s.message_id IS NULL AND s.unknown_outcomes > 0))
    RETURNING s.id, old.status, s.broadcast_id, s.message_id
"""


def _settle(items: list[tuple[int, str, datetime, str]], now: datetime) -> list[tuple[int, str, str, str]]:
    """Make these sends SENT with that wamid (only while still settleable), their wa_id from the status's
    recipient_id when none is stored; returns (id, status before, broadcast, wamid) of each."""
    if connection.vendor == "postgresql":
        columns = [list(column) for column in zip(*items, strict=True)]
        with connection.cursor() as cursor:
            cursor.execute(_SETTLE_SQL, [now, *columns])
            return cursor.fetchall()
    done = []
    for send_id, wamid, sent_at, _ in items:
        send = Send.objects.filter(id=send_id).values_list("status", "broadcast_id", "message_id", "unknown_outcomes")
        row = send.first()
        if row is None or not _settleable(row[0], row[2], row[3]):
            continue
        Send.objects.filter(id=send_id).update(
            status=SendStatus.SENT,
            message_id=row[2] or wamid,
            sent_at=sent_at,
            lease_expires_at=None,
            posting_at=None,
            next_attempt_at=None,
            failed_at=None,
            error_code="",
            error_title="",
            error_message="",
            error_retryable=None,
            updated_at=now,
        )
        done.append((send_id, row[0], row[1], row[2] or wamid))
    return done


# Sends no status can move any more: their statuses are dropped here, without even the channel read.
_SETTLED_FOR_GOOD = frozenset({SendStatus.READ, SendStatus.CANCELLED})


def _final(status: str, message_id: str | None) -> bool:
    """No status of Meta's can move this send any more (a FAILED one without wamid may still be settled)."""
    return status in _SETTLED_FOR_GOOD or (status == SendStatus.FAILED and message_id is not None)


@dataclass
class CallbackMatch:
    """What statuses_match resolved: the statuses to apply by wamid, the sends it settled, and the rows of the
    sends it found for those wamids (id, wamid, status, broadcast_id, to, pricing, billed), channel already
    checked."""

    statuses: list[StatusUpdate]
    settled: list[int]
    known: dict[str, tuple[int, str, str, str, str, Any, bool]]


def statuses_match(statuses: Sequence[StatusUpdate], *, publish: bool = True) -> CallbackMatch:
    """Resolve the statuses that carry callback data of ours to their sends (inside the caller's transaction).

    A status matched by its callback data comes back with its send's wamid (a send posted twice and accepted twice
    has one wamid stored; both messages' statuses reach it), after settling a send whose outcome was unknown: SENT
    with the status's wamid, moved further by the status itself. One of another channel is dropped; a reference no
    send has falls back to its wamid. Statuses without callback data pass unchanged."""
    by_ref: dict[tuple[str, int], list[StatusUpdate]] = defaultdict(list)
    out: list[StatusUpdate] = []
    for update in statuses:
        ref = callback_parse(update.biz_opaque_callback_data) if update.biz_opaque_callback_data else None
        if ref is None:
            out.append(update)
        else:
            by_ref[ref].append(update)
    known: dict[str, tuple[int, str, str, str, str, Any, bool]] = {}
    if not by_ref:
        return CallbackMatch(out, [], known)
    rows = _sends_by_callback(list(by_ref))
    matched: dict[tuple[str, int], tuple] = {(row[1], row[2]): row for row in rows}
    # (channel id, phone_number_id) of each broadcast, read by the same probe.
    channel_of = {row[1]: (row[9], row[10]) for row in rows}
    now = timezone.now()
    to_settle: list[tuple[int, str, datetime, str]] = []
    pending: list[tuple[tuple, list[StatusUpdate]]] = []  # statuses waiting for their send's wamid
    for ref, updates in by_ref.items():
        row = matched.get(ref)
        if row is None:
            out += updates  # not one of our sends after all: by wamid, as any other status
            continue
        send_id, broadcast_id, _, status, message_id, unknown_outcomes = row[:6]
        if _final(status, message_id):
            continue
        phone = channel_of.get(broadcast_id, ("", None))[1]
        updates = [u for u in updates if not u.phone_number_id or u.phone_number_id == phone]
        if not updates:
            continue
        if message_id is None and _settleable(status, message_id, unknown_outcomes):
            proofs = [u for u in updates if u.status in _PROOF_STATUSES and len(u.wamid) <= 128]
            if proofs:
                first = min(proofs, key=lambda u: (u.timestamp or now).timestamp())
                to_settle.append((send_id, first.wamid, first.timestamp or now, first.recipient_id[:32]))
        pending.append((row, updates))
    settled: list[int] = []
    settled_wamid: dict[int, str] = {}
    if to_settle:
        settling = {item[0] for item in to_settle}
        # The lock order of broadcasts/counts.py: the broadcast rows before their sends.
        broadcasts_lock(broadcast_ids={row[1] for row in rows if row[0] in settling})
        done = _settle(sorted(to_settle), now)
        counts_add(deltas_of((broadcast_id, before, SendStatus.SENT) for _, before, broadcast_id, _ in done))
        settled = sorted(send_id for send_id, *_ in done)
        settled_wamid = {send_id: wamid for send_id, _, _, wamid in done}
        if publish and settled:
            message_events_publish(send_ids=settled, status=SendStatus.SENT)
        # They count as sent in msg_sends_total (the engine's own write of them will find them SENT and not count).
        per_channel: dict[str, int] = defaultdict(int)
        for _, _, broadcast_id, _ in done:
            per_channel[channel_of.get(broadcast_id, ("", ""))[0]] += 1
        transaction.on_commit(
            lambda: [sends_add(channel_id=c, counts={("sent", ""): n}) for c, n in per_channel.items()]
        )
    for row, updates in pending:
        send_id, broadcast_id, _, status, message_id, _, to, stored, billed = row[:9]
        if send_id in settled_wamid:
            message_id, status = settled_wamid[send_id], SendStatus.SENT
        if message_id is None:
            continue  # not settled (nothing Meta said proves a message): nothing to apply
        known[message_id] = (send_id, message_id, status, broadcast_id, to, stored, billed)
        out += [u if u.wamid == message_id else dataclasses.replace(u, wamid=message_id) for u in updates]
    return CallbackMatch(out, settled, known)
