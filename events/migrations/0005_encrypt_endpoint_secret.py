"""Endpoint signing secrets encrypted at rest (core.crypto): varchar(128) becomes text (a Fernet token is longer),
and existing rows are encrypted."""

from django.db import migrations

import core.crypto


def encrypt_rows(apps, schema_editor):
    core.crypto.reencrypt_column(apps.get_model("events", "WebhookEndpoint"), "secret", only_plaintext=True)


def decrypt_rows(apps, schema_editor):
    core.crypto.decrypt_column(apps.get_model("events", "WebhookEndpoint"), "secret")


class Migration(migrations.Migration):
    dependencies = [
        ("events", "0004_delivery_head_index_with_id"),
    ]

    operations = [
        migrations.AlterField(
            model_name="webhookendpoint",
            name="secret",
            field=core.crypto.EncryptedTextField(editable=False),
        ),
        migrations.RunPython(encrypt_rows, decrypt_rows, elidable=False),
    ]
