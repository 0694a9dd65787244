"""The kept counts against the sends: every test that moves sends ends by checking them."""

from django.db import connection, transaction

from broadcasts.counts import COUNT_FIELDS, counts_from_sends, counts_rebuild
from broadcasts.models import Broadcast


def assert_counts_exact(*broadcasts) -> dict[str, dict[str, int]]:
    """The counts kept on each broadcast (every non-purged one when none is named) equal a GROUP BY over its sends,
    and add up to total_recipients. Returns the kept counts by broadcast id.

    Both reads see one snapshot (REPEATABLE READ) when the test runs outside a transaction: with live workers and
    webhooks, a move committed between two READ COMMITTED reads would show a difference that never existed."""
    ids = [b if isinstance(b, str) else b.id for b in broadcasts]
    queryset = Broadcast.objects.filter(purged_at__isnull=True)
    if ids:
        queryset = queryset.filter(id__in=ids)
    snapshot = not connection.in_atomic_block  # else the test's own transaction has read already: no SET allowed
    with transaction.atomic():
        if snapshot:
            with connection.cursor() as cursor:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        rows = list(queryset.values("id", "total_recipients", *COUNT_FIELDS))
        assert not ids or len(rows) == len(set(ids)), "a broadcast named is missing or purged"
        counted = counts_from_sends(broadcast_ids=[row["id"] for row in rows])
    kept = {}
    for row in rows:
        values = {name: row[name] for name in COUNT_FIELDS}
        assert values == counted[row["id"]], f"kept {values} != sends {counted[row['id']]} for {row['id']}"
        assert sum(values.values()) == row["total_recipients"], (row["id"], values, row["total_recipients"])
        kept[row["id"]] = values
    return kept


def sends_update(queryset, **fields) -> int:
    """A test's direct write to sends (behind the engine's back), with their broadcasts' kept counts recounted as
    the engine would have moved them."""
    broadcast_ids = list(set(queryset.values_list("broadcast_id", flat=True)))
    n = queryset.update(**fields)
    counts_rebuild(broadcast_ids=broadcast_ids)
    return n
