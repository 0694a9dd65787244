"""Secret rotation: the previous signing secret (encrypted like ``secret``) and its expiry; the event types of
CONTRACT 9 not listed before (broadcast.cancelled, suppression.added/removed, ping)."""

import core.crypto
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('events', '0006_unmatchedstatus_moved_to_broadcasts'),
    ]

    operations = [
        migrations.AddField(
            model_name='webhookendpoint',
            name='previous_secret',
            field=core.crypto.EncryptedTextField(blank=True, editable=False, null=True),
        ),
        migrations.AddField(
            model_name='webhookendpoint',
            name='previous_secret_expires_at',
            field=models.DateTimeField(blank=True, editable=False, null=True),
        ),
        migrations.AlterField(
            model_name='event',
            name='type',
            field=models.CharField(choices=[('message.sent', 'Message Sent'), ('message.delivered', 'Message Delivered'), ('message.read', 'Message Read'), ('message.failed', 'Message Failed'), ('broadcast.paused', 'Broadcast Paused'), ('broadcast.completed', 'Broadcast Completed'), ('broadcast.cancelled', 'Broadcast Cancelled'), ('suppression.added', 'Suppression Added'), ('suppression.removed', 'Suppression Removed'), ('ping', 'Ping')], max_length=32),
        ),
    ]
