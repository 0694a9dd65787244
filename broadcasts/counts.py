"""The counts kept on the broadcast: sends per status, moved with the sends (docs/api.md and docs/operations.md).

Every statement that changes a send's status learns, from its WHERE clause or its RETURNING, each send's
old and new status, and the same transaction adds the difference to the broadcast's columns with ONE relative
``UPDATE broadcasts_broadcast SET sent = sent + n, ...`` per broadcast: two flushers and a webhook moving sends of
the same broadcast at once never lose an update, and reads (GET, the list, the finalize check, the events, the
admin) never aggregate sends.

Lock order, everywhere: the broadcast rows first (in id order), then their sends. Cancel and pause lock the
broadcast row before they touch its sends (``broadcast_get_for_update``); so every writer of sends' statuses
takes the broadcast rows it will count on (``broadcasts_lock``) before its send UPDATE, and no two transactions
can wait for each other in a cycle. Same-broadcast writers queue for the length of one short transaction.
"""

from collections import defaultdict
from collections.abc import Iterable, Mapping
from decimal import Decimal

from django.db import connection, transaction
from django.db.models import Count, F

from broadcasts.models import KEPT_COUNT_FIELDS, Broadcast, Send

COUNT_FIELDS = KEPT_COUNT_FIELDS

# {broadcast_id: {field: delta}}
Deltas = dict[str, dict[str, int]]


def broadcasts_lock(*, broadcast_ids: Iterable[str]) -> None:
    """Lock the broadcast rows (FOR NO KEY UPDATE, in id order) before the caller changes their sends' statuses.

    Inside the caller's transaction. A row already locked by this transaction (cancel holds it FOR UPDATE) is
    simply locked again."""
    ids = sorted(set(broadcast_ids))
    if ids:
        list(Broadcast.objects.filter(id__in=ids).order_by("id").select_for_update(no_key=True).values_list("id"))


def broadcasts_lock_for_sends(*, send_ids: list[int]) -> None:
    """``broadcasts_lock`` for the broadcasts of these sends (a send's broadcast never changes: no lock to read
    it). One statement, one primary-key probe per send."""
    if not send_ids:
        return
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT b.id FROM broadcasts_broadcast b
            WHERE b.id IN (SELECT s.broadcast_id FROM broadcasts_send s WHERE s.id = ANY(%s::bigint[]))
            ORDER BY b.id FOR NO KEY UPDATE
            """,
            [list(send_ids)],
        )
        cursor.fetchall()


def deltas_of(moves: Iterable[tuple[str, str, str]]) -> Deltas:
    """Per-broadcast deltas from (broadcast_id, old status, new status) of the sends a statement moved."""
    deltas: Deltas = defaultdict(lambda: dict.fromkeys(COUNT_FIELDS, 0))
    for broadcast_id, old, new in moves:
        if old == new:
            continue
        d = deltas[broadcast_id]
        d[str(old).lower()] -= 1
        d[str(new).lower()] += 1
    return dict(deltas)


def counts_add(deltas: Mapping[str, Mapping[str, int]], *, billed: Mapping[str, Decimal] | None = None) -> None:
    """Add the deltas to the broadcasts' kept counts: one relative UPDATE per broadcast, in id order (inside the
    transaction that moved the sends, after ``broadcasts_lock``). ``billed`` (what the same transaction billed, per
    broadcast) rides in the same UPDATE, so a status body that moves and bills writes each broadcast row once."""
    billed = billed or {}
    for broadcast_id in sorted(deltas.keys() | billed.keys()):
        changes = {name: F(name) + n for name, n in deltas.get(broadcast_id, {}).items() if n}
        if billed.get(broadcast_id):
            changes["billed"] = F("billed") + billed[broadcast_id]
        if changes:
            Broadcast.objects.filter(id=broadcast_id).update(**changes)


def counts_move(*, broadcast_id: str, old: str, new: str, n: int) -> None:
    """``n`` sends of one broadcast went from ``old`` to ``new`` (a bulk transition)."""
    if n and old != new:
        counts_add({broadcast_id: {str(old).lower(): -n, str(new).lower(): n}})


def counts_from_sends(*, broadcast_ids: list[str]) -> dict[str, dict[str, int]]:
    """Sends per status for each broadcast, counted from the sends (one GROUP BY, O(sends)): what the kept counts
    always equal (the tests check it after every kind of transition); for tests and ``counts_rebuild``."""
    counts = {bid: dict.fromkeys(COUNT_FIELDS, 0) for bid in broadcast_ids}
    rows = (
        Send.objects.filter(broadcast_id__in=broadcast_ids)
        .values_list("broadcast_id", "status")
        .annotate(n=Count("id"))
        .order_by()
    )
    for broadcast_id, status, n in rows:
        counts[broadcast_id][status.lower()] = n
    return counts


def counts_rebuild(*, broadcast_ids: list[str]) -> None:
    """Recount these broadcasts from their sends, each under its row lock (repair; what migration 0005 does for
    every broadcast). Never for a purged broadcast: its sends are gone, its counts are the record."""
    for broadcast_id in sorted(broadcast_ids):
        with transaction.atomic():
            broadcasts_lock(broadcast_ids=[broadcast_id])
            values = counts_from_sends(broadcast_ids=[broadcast_id])[broadcast_id]
            Broadcast.objects.filter(id=broadcast_id, purged_at__isnull=True).update(**values)
