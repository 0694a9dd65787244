"""UnmatchedStatus moves to the broadcasts app (Meta's inbound statuses belong with the sends they move).

State only: the table ``events_unmatchedstatus`` and its rows stay exactly where they are;
``broadcasts.0003_unmatchedstatus_from_events`` adopts it under the same name.
"""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("events", "0005_encrypt_endpoint_secret"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[migrations.DeleteModel(name="UnmatchedStatus")],
            database_operations=[],
        ),
    ]
