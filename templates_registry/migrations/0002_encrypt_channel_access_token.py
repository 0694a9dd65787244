"""Channel access tokens encrypted at rest (core.crypto): the column type stays text, existing rows are encrypted."""

from django.db import migrations

import core.crypto


def encrypt_rows(apps, schema_editor):
    core.crypto.reencrypt_column(apps.get_model("templates_registry", "Channel"), "access_token", only_plaintext=True)


def decrypt_rows(apps, schema_editor):
    core.crypto.decrypt_column(apps.get_model("templates_registry", "Channel"), "access_token")


class Migration(migrations.Migration):
    dependencies = [
        ("templates_registry", "0001_initial"),
    ]

    operations = [
        migrations.AlterField(
            model_name="channel",
            name="access_token",
            field=core.crypto.EncryptedTextField(),
        ),
        migrations.RunPython(encrypt_rows, decrypt_rows, elidable=False),
    ]
