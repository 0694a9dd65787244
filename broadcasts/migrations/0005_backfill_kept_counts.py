"""Backfill the kept counts of existing broadcasts from their sends, BACKFILL_BATCH broadcasts per short
transaction (one GROUP BY over their sends on the (broadcast, status, index) index): no long lock.

Deploy with the delivery workers and the webhook stopped (or run the migration again once the new code runs:
it recomputes every broadcast): a send whose status changes between a batch's GROUP BY and the new code starting
would otherwise not be counted. Re-running it is always safe.
"""

from django.db import connection, migrations, transaction

BACKFILL_BATCH = 200

_SQL_POSTGRESQL = """
UPDATE broadcasts_broadcast AS b SET
    pending = COALESCE(c.pending, 0), sent = COALESCE(c.sent, 0), delivered = COALESCE(c.delivered, 0),
    read = COALESCE(c.read, 0), failed = COALESCE(c.failed, 0), cancelled = COALESCE(c.cancelled, 0)
FROM (SELECT unnest(%s::varchar[]) AS id) AS ids
LEFT JOIN (
    SELECT broadcast_id,
           count(*) FILTER (WHERE status = 'PENDING') AS pending,
           count(*) FILTER (WHERE status = 'SENT') AS sent,
           count(*) FILTER (WHERE status = 'DELIVERED') AS delivered,
           count(*) FILTER (WHERE status = 'READ') AS read,
           count(*) FILTER (WHERE status = 'FAILED') AS failed,
           count(*) FILTER (WHERE status = 'CANCELLED') AS cancelled
    FROM broadcasts_send WHERE broadcast_id = ANY(%s::varchar[]) GROUP BY broadcast_id
) AS c ON c.broadcast_id = ids.id
WHERE b.id = ids.id
"""


def backfill(apps, schema_editor) -> None:
    Broadcast = apps.get_model("broadcasts", "Broadcast")
    Send = apps.get_model("broadcasts", "Send")
    last = ""
    while True:
        ids = list(Broadcast.objects.filter(id__gt=last).order_by("id").values_list("id", flat=True)[:BACKFILL_BATCH])
        if not ids:
            return
        last = ids[-1]
        with transaction.atomic():
            if connection.vendor == "postgresql":
                with connection.cursor() as cursor:
                    cursor.execute(_SQL_POSTGRESQL, [ids, ids])
                continue
            counts = {bid: dict.fromkeys(("pending", "sent", "delivered", "read", "failed", "cancelled"), 0) for bid in ids}
            rows = Send.objects.filter(broadcast_id__in=ids).values_list("broadcast_id", "status").order_by()
            for broadcast_id, status in rows.iterator():
                counts[broadcast_id][status.lower()] += 1
            for broadcast_id, values in counts.items():
                Broadcast.objects.filter(id=broadcast_id).update(**values)


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("broadcasts", "0004_broadcast_kept_counts"),
    ]

    operations = [migrations.RunPython(backfill, migrations.RunPython.noop)]
