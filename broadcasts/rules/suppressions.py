"""Consent (docs/rules.md): each organization's suppression list, and the erasure of a contact.

A number or BSUID on the list (a BSUID entry keeps the BSUID in ``to`` and is hashed like a number) gets no
MARKETING template (the gate, ``broadcasts/delivery/gates/consent.py``). It is added
by Meta's ``user_preferences`` "stop" webhook (source ``user_preferences``), by error 131050 in an answer or a
``failed`` status (source ``131050``), or by ``POST /v1/suppressions`` (source ``api``); removed by a "resume"
webhook (only entries whose source is not ``api``: the customer's own choice stands) or by the API. Meta's
``user_preferences`` updates themselves are applied by rules/preferences.py.

Rows are found by ``to_hash`` (SHA-256 of the E.164 number or BSUID), never by ``to``: ``contact_erase`` blanks
``to`` and the number stays suppressed. A change that really changed the list records a ``suppression.added`` /
``suppression.removed`` event in the same transaction (delivered after commit by the outbox); a repeat records
nothing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from datetime import datetime

from django.db import IntegrityError, connection, transaction
from django.db.models import Q

from broadcasts import selectors
from broadcasts.lifecycle import number_sends_cancel
from broadcasts.models import (
    ContactIdentity,
    CustomerWindow,
    MarketingHold,
    Send,
    Suppression,
    SuppressionSource,
)
from broadcasts.phones import phone_to_e164
from events.endpoints import endpoints_active
from events.models import EventType
from events.outbox import NewEvent, events_record
from whatsapp.numbers import wa_id_e164_forms

# Meta's error "the user stopped marketing messages": an answer or a failed status with it suppresses the number.
USER_STOPPED_MARKETING = "131050"
USER_STOPPED_REASON = "Meta error 131050: the user stopped marketing messages."
# Sends erased per UPDATE: a number may have many sends across broadcasts; each statement stays short.
ERASE_BATCH = 1000
# Domain-separates our hashes from any other SHA-256 of phone numbers. Not a secret, and never changes: the list
# must keep matching across SECRET_KEY or ENCRYPTION_KEYS rotations.
_HASH_PREFIX = b"kbai-suppression-v1:"


def number_hash(to: str) -> str:
    """The stored hash of an E.164 number (64 hex characters)."""
    return hashlib.sha256(_HASH_PREFIX + to.encode()).hexdigest()


def numbers_of_wa_id(*, organization_id: int, wa_id: str) -> list[str]:
    """The organization's E.164 numbers Meta's ``wa_id`` stands for (docs/rules.md): the numbers of its sends whose
    stored ``contacts[].wa_id`` is it, else every valid E.164 form of it (Meta's id differs from the E.164 number in
    Mexico, Argentina and Brazil: ``whatsapp.numbers.wa_id_e164_forms``). Empty when it is not digits."""
    if not isinstance(wa_id, str) or not wa_id.isdigit() or not 6 <= len(wa_id) <= 15:
        return []
    known = sorted(
        set(
            selectors.sends_by_meta_number(numbers=[wa_id])
            .filter(broadcast__organization_id=organization_id)
            .exclude(to="")
            .values_list("to", flat=True)[:10]
        )
    )
    if known:
        return known
    return [n for n in wa_id_e164_forms(wa_id) if phone_to_e164(n) == n] or ["+" + wa_id]


def organization_has_suppressions(organization_id: int) -> bool:
    """Whether the organization's list holds any number (one probe of the unique index's first column)."""
    return Suppression.objects.filter(organization_id=organization_id).exists()


def suppressed_among(*, organization_id: int, numbers: list[str]) -> set[str]:
    """The numbers of ``numbers`` on the organization's list: ONE query, one probe of the unique
    (organization, to_hash) index per distinct number."""
    if not numbers:
        return set()
    by_hash = numbers_by_hash(numbers)
    with connection.cursor() as cursor:
        cursor.execute(SUPPRESSED_AMONG_SQL, [organization_id, list(by_hash)])
        found = [row[0] for row in cursor.fetchall()]
    return {by_hash[h] for h in found}


def numbers_by_hash(numbers: Iterable[str]) -> dict[str, str]:
    """{hash: number} of the distinct numbers: what the list is looked up by."""
    return {number_hash(n): n for n in set(numbers)}


# The hashes on an organization's list among the given ones (parameters: the organization's id, the hashes): also
# one part of the admission gates' one statement per batch (delivery/gate_facts.py).
SUPPRESSED_AMONG_SQL = f"""
    SELECT to_hash FROM {Suppression._meta.db_table} WHERE organization_id = %s AND to_hash = ANY(%s::varchar[])
"""


def suppression_get(*, organization_id: int, to: str) -> Suppression | None:
    return Suppression.objects.filter(organization_id=organization_id, to_hash=number_hash(to)).first()


def _event(*, organization_id: int, event_type: str, to: str, source: str, reason: str) -> None:
    """Record the event with the change (same transaction); cheap when no endpoint wants it."""
    endpoints = [
        ref for ref in endpoints_active() if ref.organization_id == organization_id and ref.subscribes_to(event_type)
    ]
    if not endpoints:
        return
    events_record(
        events=[
            NewEvent(
                organization_id=organization_id,
                type=event_type,
                data={"to": to, "source": source, "reason": reason or None},
                ordering_key=f"suppression:{number_hash(to)[:32]}",
            )
        ],
        endpoints=endpoints,
    )


def suppression_add(*, organization_id: int, to: str, source: str, reason: str = "") -> tuple[Suppression, bool]:
    """Put an E.164 number on the list; returns (the row, whether it was added now). Listed already: unchanged
    (its first source and reason stay), no event."""
    if source not in SuppressionSource.values:
        raise ValueError(f"unknown suppression source {source!r}")
    to_hash = number_hash(to)
    with transaction.atomic():
        existing = Suppression.objects.filter(organization_id=organization_id, to_hash=to_hash).first()
        if existing is not None:
            return existing, False
        try:
            with transaction.atomic():
                row = Suppression.objects.create(
                    organization_id=organization_id, to=to, to_hash=to_hash, reason=reason[:255], source=source
                )
        except IntegrityError:  # added concurrently: listed, and the other writer published
            return Suppression.objects.get(organization_id=organization_id, to_hash=to_hash), False
        _event(
            organization_id=organization_id, event_type=EventType.SUPPRESSION_ADDED, to=to, source=source, reason=reason
        )
    return row, True


def suppressions_add_many(*, entries: Iterable[tuple[int, str]], source: str, reason: str = "") -> int:
    """``suppression_add`` for (organization_id, number) pairs (131050 failures of a batch); returns how many
    were added. One read for the pairs already listed, then one insert per new number."""
    pairs = {(org_id, to) for org_id, to in entries if to}
    if not pairs:
        return 0
    listed = set(
        Suppression.objects.filter(
            Q(*[Q(organization_id=o, to_hash=number_hash(t)) for o, t in pairs], _connector=Q.OR)
        ).values_list("organization_id", "to_hash")
    )
    added = 0
    for org_id, to in sorted(pairs):
        if (org_id, number_hash(to)) not in listed:
            added += suppression_add(organization_id=org_id, to=to, source=source, reason=reason)[1]
    return added


def suppressions_add_for_failed(*, failures: Iterable[tuple[int, str | None, datetime | None]]) -> int:
    """The suppression a failure starts, for both ways a failure comes (the POST's answer, a ``failed`` status
    webhook): ``failures`` are (send id, error code, failure time) of sends this transaction just moved to FAILED;
    those with 131050 (the user stopped marketing messages) put their number on the organization's list (docs/rules.md
    and 11), in the caller's transaction. No query unless one is a 131050. Returns how many were added."""
    ids = [send_id for send_id, code, _ in failures if code == USER_STOPPED_MARKETING]
    if not ids:
        return 0
    pairs = Send.objects.filter(id__in=ids).values_list("broadcast__organization_id", "to")
    return suppressions_add_many(entries=pairs, source=SuppressionSource.ERROR_131050, reason=USER_STOPPED_REASON)


def suppression_remove(*, organization_id: int, to: str, keep_sources: tuple[str, ...] = ()) -> bool:
    """Take a number off the list (unless its source is in ``keep_sources``); True when it was removed."""
    with transaction.atomic():
        qs = Suppression.objects.filter(organization_id=organization_id, to_hash=number_hash(to))
        if keep_sources:
            qs = qs.exclude(source__in=keep_sources)
        row = qs.select_for_update().first()
        if row is None:
            return False
        row.delete()
        _event(
            organization_id=organization_id,
            event_type=EventType.SUPPRESSION_REMOVED,
            to=to,
            source=row.source,
            reason=row.reason,
        )
    return True


def suppression_list(
    *, organization_id: int, limit: int, after: tuple[datetime, int] | None = None
) -> tuple[list[Suppression], bool]:
    """The organization's entries, newest first (keyset on (created_at, id) over suppression_org_created)."""
    qs = Suppression.objects.filter(organization_id=organization_id)
    if after is not None:
        created_at, row_id = after
        qs = qs.filter(Q(created_at__lt=created_at) | Q(created_at=created_at, id__lt=row_id))
    rows = list(qs.order_by("-created_at", "-id")[: limit + 1])
    return rows[:limit], len(rows) > limit


def contact_erase(*, organization_id: int, to: str) -> int:
    """Erase a number's personal data in the organization (``DELETE /v1/contacts/{to}``); returns sends erased.

    Every send to it (any broadcast of the organization) keeps its row, index, status, error and times, so every
    count stays; its ``to`` becomes "" and its ``variables`` / ``meta_data`` (and its header media and button
    parameters) ``{}`` / null; its customer-service windows are deleted. A send still PENDING and not being posted
    is CANCELLED (``lifecycle.number_sends_cancel``, the kept counts moving with it): nothing can be sent to a
    number we no longer store. The suppression entry, if any, keeps only ``to_hash``: the number stays suppressed.
    Meta's forms of the number go too: the sends' ``wa_id`` and ``user_id`` (the BSUID Meta named for them), the
    (wa_id, BSUID) pairs naming the number or one of its wa_ids (rules/identities.py), and its marketing holds.
    In batches of ``ERASE_BATCH`` sends, one short transaction each (uses the ``send_to`` index)."""
    erased = 0
    # Read before the sends forget them: the wa_ids Meta answered for this number name its pairs.
    wa_ids = set(
        Send.objects.filter(broadcast__organization_id=organization_id, to=to)
        .exclude(wa_id=None)
        .values_list("wa_id", flat=True)
        .distinct()
    ) | {to.lstrip("+")}
    while True:
        with transaction.atomic():
            batch = list(
                Send.objects.filter(broadcast__organization_id=organization_id, to=to)
                .order_by("id")
                .values_list("id", "broadcast_id")[:ERASE_BATCH]
            )
            if not batch:
                break
            number_sends_cancel(sends=batch)  # its pending sends: CANCELLED, the kept counts with them
            erased += Send.objects.filter(id__in=[send_id for send_id, _ in batch]).update(
                to="", variables={}, meta_data=None, header_media=None, buttons=None, wa_id=None, user_id=None
            )
    # When the customer last wrote is personal data too (the customer-service windows of the messaging limit).
    CustomerWindow.objects.filter(channel__organization_id=organization_id, number=to).delete()
    MarketingHold.objects.filter(organization_id=organization_id, to=to).delete()
    ContactIdentity.objects.filter(Q(number=to) | Q(wa_id__in=wa_ids), organization_id=organization_id).delete()
    Suppression.objects.filter(organization_id=organization_id, to_hash=number_hash(to)).update(to="")
    return erased
