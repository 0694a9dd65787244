"""Secrets at rest: Fernet (AES-128-CBC + HMAC-SHA256) over ``ENCRYPTION_KEYS``, and a model field that uses it.

``ENCRYPTION_KEYS`` is a comma-separated list of Fernet keys: the first encrypts, every one decrypts (MultiFernet),
so a key is rotated by putting a new one first, running ``manage.py rotate_encryption_keys`` and then dropping the
old one. With no keys configured, one key is derived from ``SECRET_KEY`` (HKDF-SHA256), so development needs no
configuration; production should set its own keys (a deploy check warns otherwise), because changing SECRET_KEY
would then make every stored secret unreadable.

Stored values are ``enc1:`` + a Fernet token. A value without the prefix is a row written before encryption
existed: it reads back as it is, and the migrations and ``rotate_encryption_keys`` encrypt it.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings
from django.core import checks
from django.core.exceptions import ImproperlyConfigured
from django.db import models, transaction
from django.db.models.functions import Cast

PREFIX = "enc1:"
_HKDF_INFO = b"messaging-api secrets at rest v1"


class DecryptionError(ImproperlyConfigured):
    """A stored secret that none of ENCRYPTION_KEYS opens: the key it was written with is missing."""


def key_from_secret_key(secret_key: str) -> str:
    """The Fernet key used when ENCRYPTION_KEYS is unset (also printed by ``rotate_encryption_keys``)."""
    raw = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_HKDF_INFO).derive(secret_key.encode())
    return base64.urlsafe_b64encode(raw).decode()


def configured_keys() -> list[str]:
    keys = [k.strip() for k in getattr(settings, "ENCRYPTION_KEYS", None) or [] if k.strip()]
    return keys or [key_from_secret_key(settings.SECRET_KEY)]


@lru_cache(maxsize=8)
def _fernet(keys: tuple[str, ...]) -> MultiFernet:
    fernets = []
    for position, key in enumerate(keys, start=1):
        try:
            fernets.append(Fernet(key))
        except (ValueError, binascii.Error) as exc:
            raise ImproperlyConfigured(
                f"ENCRYPTION_KEYS: key {position} is not a Fernet key (32 url-safe base64-encoded bytes; make one "
                "with `python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'`)."
            ) from exc
    return MultiFernet(fernets)


def fernet() -> MultiFernet:
    return _fernet(tuple(configured_keys()))


def is_encrypted(stored: str | None) -> bool:
    return isinstance(stored, str) and stored.startswith(PREFIX)


def encrypt(plaintext: str) -> str:
    """The stored form of ``plaintext``, encrypted with the first key (a new random IV every call)."""
    return PREFIX + fernet().encrypt(plaintext.encode("utf-8")).decode("ascii")


def decrypt(stored: str) -> str:
    """The plaintext of a stored value; a legacy (unprefixed) value is returned as it is."""
    if not is_encrypted(stored):
        return stored
    try:
        return fernet().decrypt(stored[len(PREFIX) :].encode("ascii")).decode("utf-8")
    except InvalidToken as exc:
        raise DecryptionError(
            "A stored secret cannot be decrypted with ENCRYPTION_KEYS (or the key derived from SECRET_KEY): "
            "keep the key it was written with in ENCRYPTION_KEYS."
        ) from exc


def reencrypt(stored: str) -> str:
    """The stored value encrypted with the first key (plaintext encrypted, other keys' tokens rotated)."""
    if not is_encrypted(stored):
        return encrypt(stored)
    try:
        return PREFIX + fernet().rotate(stored[len(PREFIX) :].encode("ascii")).decode("ascii")
    except InvalidToken as exc:
        raise DecryptionError("A stored secret cannot be decrypted with ENCRYPTION_KEYS.") from exc


class EncryptedTextField(models.TextField):
    """A TextField stored encrypted: callers read and write plaintext, the column only ever holds ciphertext.

    The ciphertext is random per write, so the field cannot be filtered or searched on by value.
    """

    description = "Text encrypted at rest (core.crypto)"

    def from_db_value(self, value, expression, connection):
        return None if value is None else decrypt(value)

    def get_prep_value(self, value):
        # Callers only ever hold plaintext (reads decrypt), so every value written is encrypted, whatever it
        # looks like; code that writes a stored value as it is uses a TextField Value (see reencrypt_column).
        value = super().get_prep_value(value)
        return None if value is None else encrypt(str(value))


def stored_values(queryset: models.QuerySet, field_name: str) -> Iterable[tuple[object, str | None]]:
    """(pk, the column's raw stored value) of every row: Cast skips the field's decryption."""
    raw = queryset.annotate(_stored=Cast(field_name, output_field=models.TextField()))
    return raw.order_by("pk").values_list("pk", "_stored").iterator(chunk_size=500)


def reencrypt_column(model: type[models.Model], field_name: str, *, only_plaintext: bool = False) -> int:
    """Rewrites every row's ``field_name`` encrypted with the first key; returns how many rows changed.

    ``only_plaintext`` (the data migrations) leaves rows that are already encrypted alone. Rows are written with a
    queryset update of the raw column value, so model ``save()`` and ``auto_now`` fields are not involved.
    """
    changed = 0
    with transaction.atomic():
        pending = [
            (pk, stored)
            for pk, stored in stored_values(model._default_manager.all(), field_name)
            if stored is not None and not (only_plaintext and is_encrypted(stored))
        ]
        for pk, stored in pending:
            # Already the stored form: a plain TextField value, which the encrypted field would encrypt again.
            value = models.Value(reencrypt(stored), output_field=models.TextField())
            model._default_manager.filter(pk=pk).update(**{field_name: value})
            changed += 1
    return changed


def decrypt_column(model: type[models.Model], field_name: str) -> int:
    """The reverse of the data migrations: store every row's value as plaintext again."""
    changed = 0
    with transaction.atomic():
        for pk, stored in list(stored_values(model._default_manager.all(), field_name)):
            if is_encrypted(stored):
                plain = models.Value(decrypt(stored), output_field=models.TextField())
                model._default_manager.filter(pk=pk).update(**{field_name: plain})
                changed += 1
    return changed


@checks.register(checks.Tags.security, deploy=True)
def check_encryption_keys(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    """Deploy check: production sets its own ENCRYPTION_KEYS, and every key is a valid Fernet key."""
    if not getattr(settings, "ENCRYPTION_KEYS", None):
        return [
            checks.Warning(
                "ENCRYPTION_KEYS is not set: channel access tokens and endpoint secrets are encrypted with a key "
                "derived from SECRET_KEY, and changing SECRET_KEY would make them unreadable.",
                hint="Set ENCRYPTION_KEYS to one or more Fernet keys (see the README).",
                id="core.W001",
            )
        ]
    try:
        fernet()
    except ImproperlyConfigured as exc:
        return [checks.Error(str(exc), id="core.E001")]
    return []
