"""The marketing frequency cap (docs/rules.md "Campaign controls"): an organization may allow at most N MARKETING sends
per number (or BSUID: a send's ``to`` holds either) per D days (``Organization.marketing_frequency_cap`` / ``_days``,
set through tokens/frequency_cap.py). A MARKETING send whose address already has N MARKETING sends of the
organization counted within the last D days ends FAILED ``frequency_capped`` (``retryable: true``) without a call to
Meta (the gate: broadcasts/delivery/gates/frequency_cap.py). UTILITY and AUTHENTICATION sends neither count nor are
capped.

What counts, from PostgreSQL alone (across broadcasts, channels, workers and machines): the organization's MARKETING
sends to the address with a ``sent_at`` within the window (Meta accepted them: SENT, DELIVERED, READ, and those that
failed after Meta accepted them), and those being posted right now (PENDING with ``posting_at``: claims.py's posting
mark, set in the same planning hop before the gates).

Two batches racing for an address's last slot: each batch takes ``pg_advisory_xact_lock`` on every
(organization, address) it holds, in sorted order (no deadlock), counts, and un-marks (``posting_at`` NULL) the sends
it caps before the lock is released. So the second to take the lock sees the first's verdict: a send the first let
go is still marked (counted), one it capped is no longer; exactly one of them goes.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta

from django.db import connection, transaction

from templates_registry.models import Template
from tokens.frequency_cap import FrequencyCap
from tokens.models import Organization

FREQUENCY_CAPPED = "frequency_capped"
CAPPED_CATEGORY = Template.Category.MARKETING

# The organization's cap (parameter: its id); also one part of the admission gates' one statement per MARKETING batch
# (delivery/gates/facts.py).
CAP_SQL = f"SELECT marketing_frequency_cap, marketing_frequency_days FROM {Organization._meta.db_table} WHERE id = %s"

# Counted sends per address (parameters: the addresses, the organization's id, the window's start, the send ids not
# to count: the batch's own). By ``to`` (index send_to), the broadcast for the organization, the template for the
# category.
_COUNT_SQL = """
    SELECT s."to", count(*)
    FROM broadcasts_send s
    JOIN broadcasts_broadcast b ON b.id = s.broadcast_id
    JOIN templates_registry_template t ON t.id = b.template_id
    WHERE s."to" = ANY(%s::varchar[]) AND b.organization_id = %s AND t.category = 'MARKETING'
      AND (s.sent_at >= %s OR (s.status = 'PENDING' AND s.posting_at IS NOT NULL))
      AND s.id <> ALL(%s::bigint[])
    GROUP BY s."to"
"""
# One statement for every lock of the batch, taken in the sorted order of the subquery.
_LOCK_SQL = "SELECT count(pg_advisory_xact_lock(k)) FROM (SELECT unnest(%s::bigint[]) AS k ORDER BY k) AS keys"
_UNMARK_SQL = "UPDATE broadcasts_send SET posting_at = NULL WHERE id = ANY(%s::bigint[]) AND status = 'PENDING'"


def frequency_cap_of_row(row: Sequence | None) -> FrequencyCap | None:
    """The cap from CAP_SQL's row (None: off, or no such organization)."""
    if row is None or not row[0] or not row[1]:
        return None
    return FrequencyCap(int(row[0]), int(row[1]))


def frequency_cap_read(*, organization_id: int) -> FrequencyCap | None:
    with connection.cursor() as cursor:
        cursor.execute(CAP_SQL, [organization_id])
        return frequency_cap_of_row(cursor.fetchone())


def lock_key(organization_id: int, address: str) -> int:
    """The advisory lock of one (organization, address): a signed 64-bit hash (a collision only serializes two
    addresses that need not be)."""
    digest = hashlib.blake2b(f"frequency-cap:{organization_id}:{address}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def sends_counted(
    *, organization_id: int, addresses: Iterable[str], since: datetime, exclude_ids: Iterable[int] = ()
) -> dict[str, int]:
    """{address: MARKETING sends of the organization counted since ``since``} (see the module's docstring)."""
    addresses = sorted(set(addresses) - {""})
    if not addresses:
        return {}
    with connection.cursor() as cursor:
        cursor.execute(_COUNT_SQL, [addresses, organization_id, since, sorted(exclude_ids)])
        return {address: int(n) for address, n in cursor.fetchall()}


def over_cap(*, cap: FrequencyCap, counted: dict[str, int], sends: Iterable[tuple[int, str]]) -> set[int]:
    """Of ``sends`` ((key, address) in the order they would be posted), the keys the cap stops: an address gets what
    is left of its N after ``counted``, its first sends first (a number listed twice with one slot left: the first
    goes)."""
    used = Counter(counted)
    capped = set()
    for key, address in sends:
        if not address:
            continue
        if used[address] >= cap.sends:
            capped.add(key)
        else:
            used[address] += 1
    return capped


def sends_cap(*, organization_id: int, cap: FrequencyCap, sends: Sequence[tuple[int, str]], now: datetime) -> set[int]:
    """The ids of ``sends`` ((id, address) of sends marked posting) the cap stops, decided under the addresses'
    advisory locks; those are un-marked before the locks are released (module docstring). One transaction: the lock
    statement, one indexed count, and an UPDATE only when some are capped."""
    keys = sorted({lock_key(organization_id, address) for _, address in sends if address})
    if not keys:
        return set()
    with transaction.atomic():
        with connection.cursor() as cursor:
            # Its own statement: a statement's snapshot is taken when it starts, so the count must come after the
            # wait for the locks to see what their holder committed.
            cursor.execute(_LOCK_SQL, [keys])
        counted = sends_counted(
            organization_id=organization_id,
            addresses=[address for _, address in sends],
            since=now - timedelta(days=cap.days),
            exclude_ids=[send_id for send_id, _ in sends],
        )
        capped = over_cap(cap=cap, counted=counted, sends=sorted(sends))
        if capped:
            with connection.cursor() as cursor:
                cursor.execute(_UNMARK_SQL, [sorted(capped)])
    return capped


def preview_capped(
    *, organization_id: int, category: str, addresses: Sequence[str], now: datetime, cap: FrequencyCap | None = None
) -> set[int]:
    """The dry run (docs/api.md ``frequency_capped``): the positions in ``addresses`` (request order) the cap would
    stop if posted now, counting what is already sent or being posted. No query for a non-MARKETING template; one
    (the cap) for an organization without one; two otherwise."""
    if category != CAPPED_CATEGORY or not addresses:
        return set()
    if cap is None:
        cap = frequency_cap_read(organization_id=organization_id)
    if cap is None:
        return set()
    counted = sends_counted(organization_id=organization_id, addresses=addresses, since=now - timedelta(days=cap.days))
    return over_cap(cap=cap, counted=counted, sends=enumerate(addresses))
