"""Who a user is, from everything Meta tells us (docs/rules.md, "Usernames and BSUIDs").

Meta names a user by its WhatsApp id (``wa_id``, digits: not always the E.164 number) and, since usernames, by a
business-scoped user id (BSUID, ``user_id``), and may give either alone. Every place that gives both (the answer's
``contacts[0]``, a status's ``recipient_id`` + ``recipient_user_id``, an incoming message's ``contacts[]``, a
``user_preferences`` entry) records the pair here (``ContactIdentity``, per organization), with the E.164 number
we sent to when a send names it; every path that reads a user from Meta resolves it through this map first
(``addresses_of``), then through the E.164 readings of the wa_id (``suppressions.numbers_of_wa_id``).

A new pair whose BSUID the user suppressed (``user_preferences`` "stop") suppresses the number too, so the consent
gate, which looks at the send's own address only, respects "a number Meta tied to a suppressed BSUID".
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import orjson
from django.db import connection
from django.utils import timezone

from broadcasts.models import Broadcast, ContactIdentity, Send, Suppression, SuppressionSource
from broadcasts.phones import phone_to_e164
from broadcasts.rules.suppressions import number_hash, numbers_of_wa_id, suppression_add
from whatsapp.numbers import is_bsuid

# Bounds on what one lookup returns: a BSUID is one user, who has a handful of numbers at most; a hostile map
# must not turn one webhook into thousands of writes.
MAX_NUMBERS_PER_USER = 20
TIED_REASON = "The user stopped marketing messages (a number Meta tied to that user)."


@dataclass(frozen=True)
class Pair:
    """One (wa_id, BSUID) pair Meta gave, for the organization given or the one of ``broadcast_id``'s broadcast
    (the answers' and statuses' path knows the send's broadcast, not its organization)."""

    user_id: str
    wa_id: str
    number: str = ""  # the E.164 number of the send Meta answered about, when it is one
    organization_id: int | None = None
    broadcast_id: str | None = None


def _well_formed(pair: Pair) -> bool:
    return (
        is_bsuid(pair.user_id)
        and pair.wa_id.isdecimal()
        and pair.wa_id.isascii()
        and 6 <= len(pair.wa_id) <= 15
        and (pair.organization_id is not None or pair.broadcast_id is not None)
    )


def _number_or_blank(number: str) -> str:
    return number if number and len(number) <= 20 and phone_to_e164(number) == number else ""


_RECORD_SQL = f"""
    INSERT INTO {ContactIdentity._meta.db_table} AS c (organization_id, user_id, wa_id, number, seen_at)
    SELECT DISTINCT ON (org, v.user_id, v.wa_id) org, v.user_id, v.wa_id, v.number, %s
    FROM json_to_recordset(%s::json) AS v(organization_id bigint, broadcast_id text, user_id text, wa_id text,
                                          number text)
    LEFT JOIN {Broadcast._meta.db_table} b ON b.id = v.broadcast_id
    CROSS JOIN LATERAL (SELECT COALESCE(v.organization_id, b.organization_id) AS org) o
    WHERE org IS NOT NULL
    ORDER BY org, v.user_id, v.wa_id, v.number DESC
    ON CONFLICT (organization_id, user_id, wa_id) DO UPDATE
        SET number = EXCLUDED.number, seen_at = EXCLUDED.seen_at
        WHERE c.number = '' AND EXCLUDED.number <> ''
    RETURNING c.organization_id, c.user_id, c.wa_id, c.number
"""


def identities_record(*, pairs: Iterable[Pair]) -> int:
    """Record the pairs Meta gave: ONE upsert statement for the batch (in a fixed order, so concurrent bodies do
    not deadlock on it), none when no well-formed pair is given. A known pair is not written again unless it
    learns its number now. Returns how many pairs are new (or newly tied to a number).

    The new ones whose BSUID is on the organization's list by the user's own "stop" put their numbers on it too
    (one more read, only when some pair is new)."""
    rows = [
        {
            "organization_id": p.organization_id,
            "broadcast_id": p.broadcast_id,
            "user_id": p.user_id,
            "wa_id": p.wa_id,
            "number": _number_or_blank(p.number),
        }
        for p in pairs
        if _well_formed(p)
    ]
    if not rows:
        return 0
    with connection.cursor() as cursor:
        cursor.execute(_RECORD_SQL, [timezone.now(), orjson.dumps(rows).decode()])
        new = cursor.fetchall()
    if new:
        _tied_numbers_suppress(new=new)
    return len(new)


def _tied_numbers_suppress(*, new: list[tuple[int, str, str, str]]) -> None:
    """New pairs of a BSUID the user suppressed: its number joins the list (source user_preferences)."""
    hashes = {number_hash(user_id) for _, user_id, _, _ in new}
    stopped = set(
        Suppression.objects.filter(
            organization_id__in={org for org, *_ in new},
            to_hash__in=hashes,
            source=SuppressionSource.USER_PREFERENCES,
        ).values_list("organization_id", "to_hash")
    )
    for org, user_id, wa_id, number in new:
        if (org, number_hash(user_id)) not in stopped:
            continue
        numbers = [number] if number else numbers_of_wa_id(organization_id=org, wa_id=wa_id)
        for each in numbers[:MAX_NUMBERS_PER_USER]:
            suppression_add(organization_id=org, to=each, source=SuppressionSource.USER_PREFERENCES, reason=TIED_REASON)


def numbers_of_user(*, organization_id: int, user_id: str) -> list[str]:
    """The E.164 numbers of the organization tied to a BSUID: the pairs' numbers, the numbers of the sends whose
    stored ``user_id`` is it (Meta's answer or a status named it), and, for pairs that name no number, the E.164
    readings of their wa_ids (``suppressions.numbers_of_wa_id``). Sorted; empty for an unknown or malformed BSUID."""
    if not is_bsuid(user_id):
        return []
    numbers: set[str] = set()
    pairs = list(
        ContactIdentity.objects.filter(organization_id=organization_id, user_id=user_id).values_list("wa_id", "number")[
            :MAX_NUMBERS_PER_USER
        ]
    )
    for wa_id, number in pairs:
        numbers.update([number] if number else numbers_of_wa_id(organization_id=organization_id, wa_id=wa_id))
    numbers.update(
        to
        for to in Send.objects.filter(broadcast__organization_id=organization_id, user_id=user_id)
        .exclude(to=user_id)
        .values_list("to", flat=True)
        .distinct()[:MAX_NUMBERS_PER_USER]
        if to.startswith("+")
    )
    return sorted(numbers)[:MAX_NUMBERS_PER_USER]


def users_of_wa_id(*, organization_id: int, wa_id: str) -> list[str]:
    """The reverse: the BSUIDs Meta tied to a wa_id in the organization (sorted)."""
    return sorted(
        set(
            ContactIdentity.objects.filter(organization_id=organization_id, wa_id=wa_id).values_list(
                "user_id", flat=True
            )[:MAX_NUMBERS_PER_USER]
        )
    )


def users_of_number(*, organization_id: int, number: str) -> list[str]:
    """The reverse: the BSUIDs Meta tied to an E.164 number in the organization (sorted)."""
    return sorted(
        set(
            ContactIdentity.objects.filter(organization_id=organization_id, number=number).values_list(
                "user_id", flat=True
            )[:MAX_NUMBERS_PER_USER]
        )
    )


def addresses_of(*, organization_id: int, wa_id: str = "", user_id: str = "") -> list[str]:
    """Every address of ours (E.164 numbers and BSUIDs, as sends, windows and the suppression list store them) a
    user Meta named stands for: the BSUID itself and every number tied to it; the numbers of the wa_id (the map's,
    then the sends' stored wa_ids, then its E.164 readings) and the BSUIDs tied to it. Sorted, numbers first."""
    addresses: set[str] = set()
    if user_id and is_bsuid(user_id):
        addresses.add(user_id)
        addresses.update(numbers_of_user(organization_id=organization_id, user_id=user_id))
    if wa_id:
        mapped = list(
            ContactIdentity.objects.filter(organization_id=organization_id, wa_id=wa_id).values_list(
                "user_id", "number"
            )[:MAX_NUMBERS_PER_USER]
        )
        addresses.update(u for u, _ in mapped)
        addresses.update(n for _, n in mapped if n)
        addresses.update(numbers_of_wa_id(organization_id=organization_id, wa_id=wa_id))
    return sorted(addresses, key=lambda a: (not a.startswith("+"), a))
