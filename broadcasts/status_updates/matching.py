"""The sends a body's statuses name: by callback data first (settling a send whose outcome was unknown), else
by wamid; never another channel's (docs/rules.md). Each lookup is one statement of index probes."""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from django.db import connection, transaction
from django.utils import timezone

from broadcasts.counts import broadcasts_lock, counts_add, deltas_of
from broadcasts.models import SendStatus
from broadcasts.notifications import message_events_publish
from core.metrics import sends_add
from whatsapp.inbound.statuses import StatusUpdate
from whatsapp.payload import callback_parse

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
        SELECT d.broadcast_id, c.phone_number_id, c.channel_id
        FROM (SELECT DISTINCT broadcast_id FROM s) AS d
        CROSS JOIN LATERAL (
            SELECT c.phone_number_id, b.channel_id FROM broadcasts_broadcast AS b
            JOIN templates_registry_channel AS c ON c.id = b.channel_id
            WHERE b.id = d.broadcast_id LIMIT 1
        ) AS c
    )
    SELECT s.id, s.message_id, s.status, s.broadcast_id, s."to", s.pricing, s.billed, ch.phone_number_id,
           ch.channel_id
    FROM s LEFT JOIN ch ON ch.broadcast_id = s.broadcast_id
"""


def sends_find(wamids: list[str]) -> list[tuple[int, str, str, str, str, Any, bool, str | None, str | None]]:
    """(id, wamid, status, broadcast_id, to, pricing, billed, the channel's phone_number_id, the channel's id) of the
    sends carrying
    these wamids, read without a lock. A status read here may be behind the truth, never ahead of it (statuses only
    move forward): a send it shows as unable to move cannot move, and the UPDATEs' WHERE decides for the others."""
    if not wamids:
        return []
    with connection.cursor() as cursor:
        cursor.execute(_SENDS_SQL, [orjson.dumps(wamids).decode()])
        return [jsonb_decoded(row, 5) for row in cursor.fetchall()]


def jsonb_decoded(row: tuple, at: int) -> tuple:
    """The row with its jsonb column ``at`` decoded: Django has psycopg hand jsonb over as text, decoded here so
    that a repeated pricing compares equal."""
    value = row[at]
    return (*row[:at], orjson.loads(value) if isinstance(value, str) else value, *row[at + 1 :])


# --- matching: callback data first, then wamid; never another channel's (docs/rules.md) ---------------------------
# Every POST carries its send's reference as biz_opaque_callback_data ("<broadcast id>:<index>", whatsapp/payload.py)
# and Meta echoes it in each status of that message. A status carrying one of ours is matched by it, whatever its
# wamid: that finds a send whose answer was lost (timeout, worker killed), and settles it. A status whose
# metadata.phone_number_id is not its send's channel changes nothing. All of it costs a fixed number of statements
# per body: one probe per reference (the unique (broadcast, index) index), one read of the broadcasts' channels,
# and one UPDATE for the sends settled.


# Meta's statuses that prove it took a message (anything it reports on a message it has).
_PROOF_STATUSES = frozenset({"sent", "delivered", "read", "failed"})


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
    ids = list(by_broadcast)
    pairs = [
        {"b": n, "i": index} for n, broadcast_id in enumerate(ids, start=1) for index in by_broadcast[broadcast_id]
    ]
    with connection.cursor() as cursor:
        cursor.execute(_CALLBACK_SQL, [ids, orjson.dumps(pairs).decode(), ids])
        return [jsonb_decoded(row, 7) for row in cursor.fetchall()]


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
    columns = [list(column) for column in zip(*items, strict=True)]
    with connection.cursor() as cursor:
        cursor.execute(_SETTLE_SQL, [now, *columns])
        return cursor.fetchall()


# Sends no status can move any more: their statuses are dropped here, without even the channel read.
_SETTLED_FOR_GOOD = frozenset({SendStatus.READ, SendStatus.CANCELLED})


def _final(status: str, message_id: str | None) -> bool:
    """No status of Meta's can move this send any more (a FAILED one without wamid may still be settled)."""
    return status in _SETTLED_FOR_GOOD or (status == SendStatus.FAILED and message_id is not None)


@dataclass
class CallbackMatch:
    """What statuses_match_and_settle resolved: the statuses to apply by wamid, the sends it settled, and the rows
    of the sends it found for those wamids (id, wamid, status, broadcast_id, to, pricing, billed), channel already
    checked."""

    statuses: list[StatusUpdate]
    settled: list[int]
    known: dict[str, tuple[int, str, str, str, str, Any, bool]]
    # The channel's phone_number_id of each send in ``known`` (by wamid), for the channel check of the other
    # statuses of the body that name the same wamid without callback data.
    phones: dict[str, str] = dataclasses.field(default_factory=dict)
    # The channel's id of each send in ``known`` (by wamid), for the metrics' channel label.
    channels: dict[str, str] = dataclasses.field(default_factory=dict)


def statuses_match_and_settle(statuses: Sequence[StatusUpdate], *, publish: bool = True) -> CallbackMatch:
    """Resolve the statuses that carry callback data of ours to their sends, and SETTLE (write) the sends whose
    outcome was unknown, inside the caller's transaction.

    A status matched by its callback data comes back with its send's wamid (a send posted twice and accepted twice
    has one wamid stored; both messages' statuses reach it), after settling a send whose outcome was unknown: SENT
    with the status's wamid, moved further by the status itself. One of another channel, or without
    metadata.phone_number_id, is dropped; a reference no
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
    phones: dict[str, str] = {}
    channels: dict[str, str] = {}
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
        # Only a status that names the send's channel: one without metadata.phone_number_id proves nothing. (The
        # usual reference has one status: checked without building a list.)
        if not phone:
            continue
        if len(updates) == 1:
            if updates[0].phone_number_id != phone:
                continue
        else:
            updates = [u for u in updates if u.phone_number_id == phone]
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
        phones[message_id] = channel_of.get(broadcast_id, ("", ""))[1] or ""
        channels[message_id] = channel_of.get(broadcast_id, ("", ""))[0] or ""
        out += [u if u.wamid == message_id else dataclasses.replace(u, wamid=message_id) for u in updates]
    return CallbackMatch(out, settled, known, phones, channels)
