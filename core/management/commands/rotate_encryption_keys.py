"""Re-encrypts every secret at rest with the first of ENCRYPTION_KEYS (see core/crypto.py)."""

from django.apps import apps
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from core import crypto


def encrypted_columns() -> list[tuple[type, str]]:
    """Every (model, field name) stored with EncryptedTextField, found by looking (core imports no app)."""
    return [
        (model, field.name)
        for model in apps.get_models()
        for field in model._meta.concrete_fields
        if isinstance(field, crypto.EncryptedTextField)
    ]


class Command(BaseCommand):
    help = (
        "Re-encrypts channel access tokens and endpoint secrets with the first key of ENCRYPTION_KEYS (and encrypts "
        "any left in clear text). Rotate a key: put a new key first, run this, then remove the old key. "
        "Prints the number of rows rewritten last."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--show-derived-key",
            action="store_true",
            help="print the key derived from SECRET_KEY (the default when ENCRYPTION_KEYS is unset) and exit: "
            "keep it in ENCRYPTION_KEYS before changing SECRET_KEY",
        )

    def handle(self, *args, **options):
        if options["show_derived_key"]:
            self.stdout.write(crypto.key_from_secret_key(settings.SECRET_KEY))
            return
        total = 0
        try:
            for model, field in encrypted_columns():
                changed = crypto.reencrypt_column(model, field)
                self.stdout.write(f"{model._meta.label}.{field}: {changed} row(s) re-encrypted")
                total += changed
        except crypto.DecryptionError as exc:
            raise CommandError(f"{exc} Nothing was changed in that table.") from exc
        self.stdout.write(str(total))
