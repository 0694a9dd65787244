"""UnmatchedStatus, moved here from the events app: state only, on the table ``events`` created
(``events.0003_unmatched_meta_statuses``), kept under its name ``events_unmatchedstatus``.

On an existing database nothing is executed; on a fresh one the table comes from events 0003, which the
dependency below runs first (through events 0006, which drops the model from the events app's state).
"""

import django.utils.timezone
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("broadcasts", "0002_send_posting_marker"),
        ("events", "0006_unmatchedstatus_moved_to_broadcasts"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name="UnmatchedStatus",
                    fields=[
                        (
                            "id",
                            models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID"),
                        ),
                        ("message_id", models.CharField(max_length=128)),
                        ("entry", models.JSONField()),
                        ("received_at", models.DateTimeField(db_index=True, default=django.utils.timezone.now)),
                    ],
                    options={"db_table": "events_unmatchedstatus"},
                ),
            ],
            database_operations=[],
        ),
    ]
