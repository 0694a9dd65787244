"""Partial indexes of the sends that hold at ten million rows whatever the statistics say, built CONCURRENTLY
(the sends table keeps taking writes meanwhile):

- send_pending (broadcast, id) WHERE PENDING replaces send_pending_due (next_attempt_at) WHERE PENDING: claims,
  dispatch and finalize always name the broadcast; an index not led by it let a claim scan every pending send;
- send_leased (lease_expires_at) WHERE PENDING and leased: the sweeper's expired leases, O(leased sends).
"""

from django.contrib.postgres.operations import AddIndexConcurrently, RemoveIndexConcurrently
from django.db import migrations, models


class _PlainOnSQLite:
    """CONCURRENTLY on PostgreSQL; the plain operation on the SQLite demo database."""

    plain: type

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor == "postgresql":
            return super().database_forwards(app_label, schema_editor, from_state, to_state)
        return self.plain.database_forwards(self, app_label, schema_editor, from_state, to_state)

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor == "postgresql":
            return super().database_backwards(app_label, schema_editor, from_state, to_state)
        return self.plain.database_backwards(self, app_label, schema_editor, from_state, to_state)


class _AddIndex(_PlainOnSQLite, AddIndexConcurrently):
    plain = migrations.AddIndex


class _RemoveIndex(_PlainOnSQLite, RemoveIndexConcurrently):
    plain = migrations.RemoveIndex


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("broadcasts", "0005_backfill_kept_counts"),
    ]

    operations = [
        _AddIndex(
            model_name="send",
            index=models.Index(condition=models.Q(("status", "PENDING")), fields=["broadcast", "id"], name="send_pending"),
        ),
        _RemoveIndex(model_name="send", name="send_pending_due"),
        _AddIndex(
            model_name="send",
            index=models.Index(
                condition=models.Q(("lease_expires_at__isnull", False), ("status", "PENDING")),
                fields=["lease_expires_at"],
                name="send_leased",
            ),
        ),
    ]
