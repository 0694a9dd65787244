"""The guarded UPDATEs that move sends forward: one statement per target status. Every WHERE carries the allowed
"from" statuses. And who the user is, as the statuses name it (``users_store``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson
from django.db import connection

from broadcasts.models import Send, SendStatus
from broadcasts.rules.identities import Pair, identities_record
from broadcasts.status_updates.billing import BILLED_STATUSES, BillRun, pricing_positions
from broadcasts.status_updates.folding import ALLOWED_FROM, Fold, delivered_at_of
from whatsapp.inbound.statuses import StatusUpdate


def sends_move(
    target: str, items: list[tuple[int, Fold]], now: datetime, bill: BillRun | None = None
) -> list[tuple[int, str]]:
    """One UPDATE ... FROM json_to_recordset(rows) for every send moving to ``target``; returns (moved id, its status
    before).

    The status before comes from a self-join read in the statement's snapshot: exact, because the caller holds the
    broadcasts' row locks, which every writer of a send's status takes first (broadcasts/counts.py).
    With ``bill``, the same statement stores the moved sends' pricing and bills them once (docs/rules.md): no second
    write of the rows; what it billed goes into ``bill``.
    The same statement stores the BSUID a status named (``recipient_user_id``) on a send that has none.
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
        when = "v.billable AND s.billed_at IS NULL" if target in BILLED_STATUSES else "false"
        bill_sets = (
            "pricing = COALESCE((%s::text[])[v.pricing]::jsonb, s.pricing), "
            f"price = CASE WHEN {when} THEN v.price ELSE s.price END, "
            f"billed_at = CASE WHEN {when} THEN %s::timestamptz ELSE s.billed_at END, "
        )
        distinct, positions = pricing_positions(picked)
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
            user_id = COALESCE(s.user_id, v.user_id),
            {error_sets}
            {bill_sets}
            updated_at = %s
        FROM json_to_recordset(%s::json)
             AS v(id bigint, delivered_at timestamptz, read_at timestamptz, failed_at timestamptz, error_code text,
                  error_title text, error_message text, error_retryable boolean, user_id text{bill_columns}),
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


def _move_row(target: str, send_id: int, fold: Fold) -> dict[str, Any]:
    """One send's values for the move's UPDATE (absent keys read as NULL)."""
    row: dict[str, Any] = {"id": send_id}
    if fold.user_id:
        row["user_id"] = fold.user_id
    delivered_at = delivered_at_of(target, fold)
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


def users_store(*, statuses: list[StatusUpdate], rows: list[tuple], moved: set[int]) -> None:
    """What statuses say of who the user is (``recipient_user_id`` beside or instead of ``recipient_id``): the BSUID
    on the send when it has none (the moves carried it for the sends they moved; ONE statement by wamid for the rest,
    e.g. Meta's "sent"), and the (wa_id, BSUID) pairs, with the send's number, in ONE upsert (rules/identities.py),
    for every send of the status's channel, whether or not it already held a BSUID.
    No statement when no status names a BSUID. ``rows`` are the body's matched sends (id, wamid, status,
    broadcast, to, ...)."""
    named = {u.wamid: (u.recipient_user_id, u.recipient_id, u.phone_number_id) for u in statuses if u.recipient_user_id}
    if not named:
        return
    sends = {row[1]: (row[0], row[3], row[4]) for row in rows if row[1] in named}
    rest = sorted(w for w in named if w not in sends or sends[w][0] not in moved)
    if rest:
        table = connection.ops.quote_name(Send._meta.db_table)
        with connection.cursor() as cursor:
            # Only a send of the channel the status names (docs/rules.md: the channel check), in the same statement.
            # Every such send comes back, not only those the UPDATE gave a BSUID: a send that already holds one
            # (Meta's answer named it) still ties its number to the BSUID this status names.
            cursor.execute(
                f"""
                WITH found AS MATERIALIZED (
                    SELECT s.id, s.message_id, s.broadcast_id, s."to", v.user_id
                    FROM unnest(%s::varchar[], %s::varchar[], %s::varchar[]) AS v(wamid, user_id, phone)
                    JOIN {table} AS s ON s.message_id = v.wamid
                    WHERE EXISTS (
                        SELECT 1 FROM broadcasts_broadcast AS b
                        JOIN templates_registry_channel AS c ON c.id = b.channel_id
                        WHERE b.id = s.broadcast_id AND c.phone_number_id = v.phone
                    )
                ), stored AS (
                    UPDATE {table} AS s SET user_id = f.user_id FROM found AS f
                    WHERE s.id = f.id AND s.user_id IS NULL
                    RETURNING s.id
                )
                SELECT message_id, id, broadcast_id, "to" FROM found
                """,
                [rest, [named[w][0] for w in rest], [named[w][2] for w in rest]],
            )
            sends.update({wamid: (send_id, broadcast_id, to) for wamid, send_id, broadcast_id, to in cursor.fetchall()})
    identities_record(
        pairs=[
            Pair(user_id=user_id, wa_id=wa_id, number=sends[wamid][2], broadcast_id=sends[wamid][1])
            for wamid, (user_id, wa_id, _) in named.items()
            if wa_id and wamid in sends
        ]
    )
