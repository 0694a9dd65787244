"""Meta's ``pricing`` of a status stored with its send, and the send billed once (docs/rules.md)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from dataclasses import field as dc_field
from datetime import datetime
from decimal import Decimal
from typing import Any

import orjson
from django.db import connection

from broadcasts import pricing
from broadcasts.models import Send, SendStatus
from broadcasts.phones import address_region
from broadcasts.status_updates.folding import Fold
from whatsapp.inbound.statuses import StatusUpdate


def pricing_fold(statuses: Iterable[StatusUpdate]) -> dict[str, dict[str, Any]]:
    """Meta's ``pricing`` object by wamid: the last one of the body (Meta repeats it on sent, delivered, read)."""
    out: dict[str, dict[str, Any]] = {}
    for update in statuses:
        if update.pricing is not None and len(update.wamid) <= 128:
            out[update.wamid] = update.pricing
    return out


@dataclass(slots=True)
class Bill:
    """A send whose pricing is to be stored, and which may be billed now (the UPDATE's WHERE has the last word)."""

    send_id: int
    to: str
    pricing: dict[str, Any] | None  # to store (None: keep the stored one)
    billable: bool  # Meta bills it, by the body's pricing or the stored one
    category: str | None  # our category of Meta's pricing.category
    price: Decimal | None = None  # at the card in force now, for the send's country and that category


@dataclass(slots=True)
class BillRun:
    """The bills of one body, and what the statements applied of them."""

    bills: dict[int, Bill]
    applied: set[int] = dc_field(default_factory=set)
    amounts: dict[str, Decimal] = dc_field(default_factory=lambda: defaultdict(Decimal))


BILLED_STATUSES = (SendStatus.DELIVERED, SendStatus.READ)


def bill_of(
    send_id: int,
    to: str,
    current: str,
    stored: Any,
    billed: bool,
    fold: Fold | None,
    given: dict[str, Any] | None,
) -> Bill | None:
    """What this body changes of a send's pricing and bill, or None when nothing (a redelivery costs no write)."""
    new_pricing = given if given is not None and given != stored else None
    if billed:
        return Bill(send_id, to, new_pricing, False, None) if new_pricing is not None else None
    effective = given if given is not None else stored
    # It may be DELIVERED or READ once this body is applied: what the read says, or where the body moves it.
    reaches = current in BILLED_STATUSES or (fold is not None and fold.target in BILLED_STATUSES)
    billable = reaches and pricing.pricing_billable(effective)
    if new_pricing is None and not billable:
        return None
    return Bill(send_id, to, new_pricing, billable, pricing.pricing_category(effective) if billable else None)


def pricing_positions(bills: Sequence[Bill | None]) -> tuple[list[str], list[int | None]]:
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


def bills_price(bills: list[Bill]) -> None:
    """Price the billable ones at the card in force now (its id read here; its prices cached per id)."""
    if not any(b.billable for b in bills):
        return
    card = pricing.rate_card_current()
    if card is None:
        return
    table = pricing.card_prices(card.id)
    for b in bills:
        if b.billable and b.category is not None:
            b.price = pricing.unit_price(table, country=address_region(b.to), category=b.category)


def bills_apply(bills: list[Bill], now: datetime, amounts: dict[str, Decimal]) -> None:
    """Store the pricing of sends that did not move, and bill, once, those that are DELIVERED or READ and billable
    (null price when the card has none); adds what it billed to ``amounts``. One UPDATE, under the broadcasts' row
    locks the caller holds (so the "billed before" of the self-join is exact and a send is billed once)."""
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
    statuses = list(BILLED_STATUSES)
    distinct, positions = pricing_positions(bills)
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
