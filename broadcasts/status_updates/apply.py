"""One body of Meta's statuses applied to the sends (docs/rules.md): matched, folded, moved, billed, in a
fixed number of statements."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from django.db import transaction
from django.utils import timezone

from broadcasts.counts import broadcasts_lock, counts_add, deltas_of
from broadcasts.models import SendStatus
from broadcasts.notifications import message_events_publish
from broadcasts.rollups import activity_add
from broadcasts.status_updates.billing import Bill, BillRun, bill_of, bills_apply, bills_price, pricing_fold
from broadcasts.status_updates.failure_effects import failed_effects_apply
from broadcasts.status_updates.folding import ALLOWED_FROM, Fold, statuses_fold
from broadcasts.status_updates.funnel import moves_count
from broadcasts.status_updates.matching import sends_find, statuses_match_and_settle
from broadcasts.status_updates.moves import sends_move, users_store
from whatsapp.inbound.statuses import StatusUpdate


class StatusMoves(dict):
    """``{status: [moved send ids]}``, plus the wamids of the body that matched no send."""

    def __init__(self, moved: dict[str, list[int]] | None = None, unmatched: list[str] | None = None) -> None:
        super().__init__(moved or {})
        self.unmatched: list[str] = unmatched or []


def _of_their_channel(statuses: list[StatusUpdate], phone_of: dict[str, str | None]) -> list[StatusUpdate]:
    """The statuses that name their send's channel (``phone_of``: wamid -> the send's channel's phone_number_id);
    those of wamids no send carries yet pass (kept for the retry, which checks them then)."""
    return [
        u for u in statuses if u.wamid not in phone_of or (phone_of[u.wamid] and u.phone_number_id == phone_of[u.wamid])
    ]


def sends_apply_statuses(*, statuses: Iterable[StatusUpdate], publish: bool = True) -> StatusMoves:
    """Moves the sends named in Meta's ``statuses[]`` (as ``whatsapp.inbound`` reads them) forward; returns
    ``{status: [moved send ids]}`` (and, in ``.unmatched``, the wamids no send carries).

    Unknown wamids, Meta's "sent", backward moves and repeats are ignored. The outbound
    ``message.*`` events are recorded in the same transaction as the moves (so neither is lost
    without the other) and their delivery is queued after commit.
    """
    # A status without metadata.phone_number_id names no channel: it proves nothing of any send (docs/rules.md).
    statuses = [update for update in statuses if update.phone_number_id]
    settled: list[int] = []
    known: dict[str, tuple[int, str, str, str, str, Any, bool]] = {}
    phone_of: dict[str, str | None] = {}
    channels: dict[str, str] = {}
    if any(update.biz_opaque_callback_data for update in statuses):
        # (The webhook's own transaction holds this and the moves below together; a settle alone is sound too.)
        with transaction.atomic(savepoint=False):
            match = statuses_match_and_settle(statuses, publish=publish)
        statuses, settled, known, phone_of = match.statuses, match.settled, match.known, dict(match.phones)
        channels = dict(match.channels)
    folds = statuses_fold(statuses)
    pricing_of = pricing_fold(statuses)
    if not folds and not pricing_of:
        users_store(statuses=_of_their_channel(statuses, phone_of), rows=list(known.values()), moved=set())
        return StatusMoves({SendStatus.SENT: settled} if settled else None)
    now = timezone.now()
    by_target: dict[str, list[tuple[int, Fold]]] = defaultdict(list)
    found: set[str] = set()
    was_sent: set[int] = set()
    moved: dict[str, list[int]] = {}
    with transaction.atomic(savepoint=False):
        broadcast_of: dict[int, str] = {}
        bills: list[Bill] = []
        # Sends statuses_match_and_settle found by callback data are known already (channel checked); the rest by wamid.
        found_rows = sends_find([w for w in folds.keys() | pricing_of if w not in known])
        found.update(row[1] for row in found_rows)
        # The channel check (docs/rules.md): a status whose metadata.phone_number_id is missing or names another
        # number than its send's channel (read with the send) moves, bills and stores nothing. The body is folded
        # again only when it had such a status (no statement more).
        phone_of.update((row[1], row[7]) for row in found_rows)
        channels.update((row[1], row[8] or "") for row in found_rows)
        checked = _of_their_channel(statuses, phone_of)
        if len(checked) != len(statuses):
            statuses, folds, pricing_of = checked, statuses_fold(checked), pricing_fold(checked)
        rows = [row[:7] for row in found_rows]
        if known:
            found.update(known)
            rows += known.values()
        for send_id, wamid, current, broadcast_id, to, stored, billed in rows:
            fold = folds.get(wamid)
            if fold is not None and current in ALLOWED_FROM[fold.target]:
                by_target[fold.target].append((send_id, fold))
                broadcast_of[send_id] = broadcast_id
            bill = bill_of(send_id, to, current, stored, billed, fold, pricing_of.get(wamid))
            if bill is not None:
                bills.append(bill)
                broadcast_of[send_id] = broadcast_id
        bills_price(bills)
        # Nothing can move (a redelivery, statuses already overtaken): one read, no lock, no write.
        if by_target or bills:
            # The broadcast rows first, in id order (broadcasts/counts.py): concurrent bodies (Meta posts several
            # at once), flushers and cancels of the same broadcast queue behind each other instead of deadlocking,
            # and each UPDATE's "status before" is exact (so "was SENT" below and the counts' deltas are exact,
            # never a duplicate event or a count moved twice).
            broadcasts_lock(broadcast_ids=broadcast_of.values())
        moves: list[tuple[str, str, str]] = []
        failures: list[tuple[str, str]] = []
        # Lower targets first, so events of one body are recorded in status order.
        run = BillRun(bills={b.send_id: b for b in bills}) if bills else None
        for target in (SendStatus.DELIVERED, SendStatus.READ, SendStatus.FAILED):
            if by_target.get(target):
                done = sends_move(target, by_target[target], now, run)
                if done:
                    if target == SendStatus.FAILED:
                        failed_effects_apply(items=by_target[target], done=done)
                        codes = {send_id: fold.error_code for send_id, fold in by_target[target]}
                        failures = [(broadcast_of[send_id], codes[send_id] or "") for send_id, _ in done]
                    moved[target] = sorted(send_id for send_id, _ in done)
                    was_sent.update(send_id for send_id, before in done if before == SendStatus.SENT)
                    moves += [(broadcast_of[send_id], before, target) for send_id, before in done]
        if run is not None:
            # What the moves did not carry (sends that did not move: a pricing alone, a late bill).
            rest = [b for b in bills if b.send_id not in run.applied]
            if rest:
                bills_apply(rest, now, run.amounts)
        users_store(statuses=statuses, rows=rows, moved={i for ids in moved.values() for i in ids})
        # The kept counts and the bill of each broadcast: one UPDATE of its row.
        counts_add(deltas_of(moves), billed=run.amounts if run is not None else None)
        # A send that jumped SENT -> READ passed through DELIVERED (it has a delivered_at).
        jumped = [i for i in moved.get(SendStatus.READ, ()) if i in was_sent]
        if moved:
            moves_count(
                moved=moved,
                jumped=jumped,
                failed=by_target.get(SendStatus.FAILED, []),
                channel_of={row[0]: channels.get(row[1], "") for row in rows},
            )
        if publish:
            # The customer gets message.delivered before message.read, as for any other message.
            if jumped:
                message_events_publish(send_ids=jumped, status=SendStatus.DELIVERED)
            for target, ids in moved.items():
                message_events_publish(send_ids=ids, status=target)
        # The overview's failures by code (broadcasts/rollups.py): last, one statement, none without a failure.
        activity_add(now=now, failures=failures)
    unmatched = [wamid for wamid in folds if wamid not in found]
    if settled:
        moved[SendStatus.SENT] = settled
    return StatusMoves(moved, unmatched=unmatched)
