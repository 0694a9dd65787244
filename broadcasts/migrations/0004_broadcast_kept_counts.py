"""Counts kept on the broadcast (sends per status) and ``purged_at`` (retention); the sweeper's and retention's
partial indexes on the (small) broadcast table. Adding a column with a constant default rewrites nothing."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("broadcasts", "0003_unmatchedstatus_from_events"),
    ]

    operations = [
        *[
            migrations.AddField(model_name="broadcast", name=name, field=models.IntegerField(default=0))
            for name in ("pending", "sent", "delivered", "read", "failed", "cancelled")
        ],
        migrations.AddField(
            model_name="broadcast", name="purged_at", field=models.DateTimeField(blank=True, null=True)
        ),
        migrations.AddIndex(
            model_name="broadcast",
            index=models.Index(condition=models.Q(("pending__gt", 0)), fields=["status"], name="broadcast_with_pending"),
        ),
        migrations.AddIndex(
            model_name="broadcast",
            index=models.Index(
                condition=models.Q(("completed_at__isnull", False), ("purged_at__isnull", True)),
                fields=["completed_at"],
                name="broadcast_purge_due",
            ),
        ),
    ]
