"""The sweeper's expired-lease lookup on its own partial index (leased pending sends only), built CONCURRENTLY:
the sends table (millions of rows) keeps taking writes meanwhile."""

from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models


class _AddIndexConcurrentlyWhereSupported(AddIndexConcurrently):
    """CONCURRENTLY on PostgreSQL; a plain CREATE INDEX on the SQLite demo database."""

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor == "postgresql":
            return super().database_forwards(app_label, schema_editor, from_state, to_state)
        return migrations.AddIndex.database_forwards(self, app_label, schema_editor, from_state, to_state)

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor == "postgresql":
            return super().database_backwards(app_label, schema_editor, from_state, to_state)
        return migrations.AddIndex.database_backwards(self, app_label, schema_editor, from_state, to_state)


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("broadcasts", "0005_backfill_kept_counts"),
    ]

    operations = [
        _AddIndexConcurrentlyWhereSupported(
            model_name="send",
            index=models.Index(
                condition=models.Q(("lease_expires_at__isnull", False), ("status", "PENDING")),
                fields=["lease_expires_at"],
                name="send_leased",
            ),
        ),
    ]
