"""Secrets at rest (core/crypto.py): channel access tokens and endpoint secrets are ciphertext in their columns,
read back as plaintext, rotate with ENCRYPTION_KEYS, and the migrations encrypt rows written before them."""

import pytest
from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from core import crypto
from events import endpoints as event_endpoints
from events.models import WebhookEndpoint
from templates_registry.models import Channel

KEY_1 = Fernet.generate_key().decode()
KEY_2 = Fernet.generate_key().decode()
TOKEN = "EAAG-test-channel-token"  # the conftest channel's


def raw_column(table: str, column: str) -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {column} FROM {table} ORDER BY id")
        return [row[0] for row in cursor.fetchall()]


def raw_tokens() -> list[str]:
    return raw_column("templates_registry_channel", "access_token")


def raw_secrets() -> list[str]:
    return raw_column("events_webhookendpoint", "secret")


@pytest.fixture
def endpoint(settings, org) -> tuple[WebhookEndpoint, str]:
    settings.WEBHOOKS_ALLOW_PRIVATE = True
    issued = event_endpoints.endpoint_create(organization=org, url="http://127.0.0.1:9/hooks")
    return issued.endpoint, issued.secret


@pytest.mark.django_db
def test_the_columns_never_hold_the_plaintext_and_callers_read_it(channel, endpoint):
    endpoint_row, secret = endpoint
    # then the columns hold ciphertext only
    [stored_token] = raw_tokens()
    [stored_secret] = raw_secrets()
    assert stored_token.startswith("enc1:") and TOKEN not in stored_token
    assert stored_secret.startswith("enc1:") and secret not in stored_secret and "whsec_" not in stored_secret
    # and every way of reading gives the plaintext back
    assert Channel.objects.get(pk=channel.pk).access_token == TOKEN
    assert Channel.objects.values_list("access_token", flat=True).get() == TOKEN
    assert WebhookEndpoint.objects.get(pk=endpoint_row.pk).secret == secret
    assert WebhookEndpoint.objects.values("secret").get()["secret"] == secret


@pytest.mark.django_db
def test_every_write_path_encrypts_with_a_fresh_iv(channel):
    before = raw_tokens()[0]
    channel.access_token = TOKEN
    channel.save()
    after_save = raw_tokens()[0]
    Channel.objects.filter(pk=channel.pk).update(access_token="EAAG-updated")
    after_update = raw_tokens()[0]
    assert len({before, after_save, after_update}) == 3  # same plaintext, different ciphertext: random IVs
    assert "EAAG" not in after_save + after_update
    channel.refresh_from_db()
    assert channel.access_token == "EAAG-updated"
    Channel.objects.bulk_update([Channel(pk=channel.pk, access_token="EAAG-bulk")], ["access_token"])
    assert "EAAG" not in raw_tokens()[0] and Channel.objects.get().access_token == "EAAG-bulk"


@pytest.mark.django_db
def test_rotation_with_two_keys(settings, channel, endpoint):
    _, secret = endpoint
    # given rows written under KEY_1
    settings.ENCRYPTION_KEYS = [KEY_1]
    Channel.objects.filter(pk=channel.pk).update(access_token=TOKEN)
    WebhookEndpoint.objects.update(secret=secret)
    old = raw_tokens() + raw_secrets()
    # when KEY_2 is put first, the old rows still read (all keys decrypt)
    settings.ENCRYPTION_KEYS = [KEY_2, KEY_1]
    assert Channel.objects.get().access_token == TOKEN and WebhookEndpoint.objects.get().secret == secret
    # and rotate_encryption_keys re-encrypts every row with KEY_2
    out = _call("rotate_encryption_keys")
    assert out.splitlines()[-1] == "2"
    new = raw_tokens() + raw_secrets()
    assert new != old
    assert [Fernet(KEY_2).decrypt(v.removeprefix("enc1:")).decode() for v in new] == [TOKEN, secret]
    # then KEY_1 may go: KEY_2 alone reads everything, KEY_1 alone reads nothing
    settings.ENCRYPTION_KEYS = [KEY_2]
    assert Channel.objects.get().access_token == TOKEN and WebhookEndpoint.objects.get().secret == secret
    settings.ENCRYPTION_KEYS = [KEY_1]
    with pytest.raises(crypto.DecryptionError):
        Channel.objects.get()


@pytest.mark.django_db
def test_the_default_key_comes_from_secret_key(settings, channel):
    # with ENCRYPTION_KEYS unset, the key is derived from SECRET_KEY (what the command prints for the operator)
    settings.ENCRYPTION_KEYS = []
    derived = _call("rotate_encryption_keys", "--show-derived-key").strip()
    assert derived == crypto.key_from_secret_key(settings.SECRET_KEY)
    assert Fernet(derived).decrypt(raw_tokens()[0].removeprefix("enc1:")).decode() == TOKEN
    # so keeping it in ENCRYPTION_KEYS lets SECRET_KEY change; without it the rows are unreadable
    settings.SECRET_KEY = "another-secret-key"
    with pytest.raises(crypto.DecryptionError):
        Channel.objects.get()
    settings.ENCRYPTION_KEYS = [KEY_1, derived]
    assert Channel.objects.get().access_token == TOKEN


@pytest.mark.django_db
def test_a_legacy_plaintext_row_reads_back_and_rotation_encrypts_it(channel):
    with connection.cursor() as cursor:
        cursor.execute("UPDATE templates_registry_channel SET access_token = %s", [TOKEN])
    assert raw_tokens() == [TOKEN]
    assert Channel.objects.get().access_token == TOKEN
    assert _call("rotate_encryption_keys").splitlines()[-1] == "1"
    assert TOKEN not in raw_tokens()[0] and Channel.objects.get().access_token == TOKEN


def test_a_malformed_key_is_a_configuration_error(settings):
    settings.ENCRYPTION_KEYS = ["not-a-fernet-key"]
    with pytest.raises(ImproperlyConfigured, match="key 1 is not a Fernet key"):
        crypto.encrypt("x")
    assert [m.id for m in crypto.check_encryption_keys()] == ["core.E001"]
    settings.ENCRYPTION_KEYS = []
    assert [m.id for m in crypto.check_encryption_keys()] == ["core.W001"]
    settings.ENCRYPTION_KEYS = [KEY_1]
    assert crypto.check_encryption_keys() == []


@pytest.mark.django_db(transaction=True)
def test_the_migrations_encrypt_rows_written_before_them_and_reverse_cleanly():
    before = [("templates_registry", "0001_initial"), ("events", "0004_delivery_head_index_with_id")]
    executor = MigrationExecutor(connection)
    latest = executor.loader.graph.leaf_nodes()
    # given the schema before encryption, and rows written as plaintext by the models of that time
    executor.migrate(before)
    old_apps = MigrationExecutor(connection).loader.project_state(before).apps
    org = old_apps.get_model("tokens", "Organization").objects.create(name="Legacy")
    old_apps.get_model("templates_registry", "Channel").objects.create(
        id="0123456789abcdef01234567", organization=org, phone_number_id="1", waba_id="2", access_token=TOKEN
    )
    old_apps.get_model("events", "WebhookEndpoint").objects.create(
        id="0123456789abcdef01234568", organization=org, url="https://example.com/h", events=[], secret="whsec_old"
    )
    assert raw_tokens() == [TOKEN] and raw_secrets() == ["whsec_old"]
    # when the migrations run
    MigrationExecutor(connection).migrate(latest)
    # then the rows are encrypted and read back unchanged
    assert TOKEN not in raw_tokens()[0] and raw_tokens()[0].startswith("enc1:")
    assert "whsec_old" not in raw_secrets()[0] and raw_secrets()[0].startswith("enc1:")
    assert Channel.objects.get().access_token == TOKEN
    assert WebhookEndpoint.objects.get().secret == "whsec_old"
    # and migrating back stores plaintext again (then forward once more, as the other tests expect)
    MigrationExecutor(connection).migrate(before)
    assert raw_tokens() == [TOKEN] and raw_secrets() == ["whsec_old"]
    MigrationExecutor(connection).migrate(latest)
    assert Channel.objects.get().access_token == TOKEN


def _call(*args: str) -> str:
    from io import StringIO

    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


@pytest.mark.django_db
def test_a_plaintext_that_looks_encrypted_is_still_encrypted(channel):
    # a value shaped like a stored one is written as any other: encrypted, and read back as given
    lookalike = "enc1:gAAAAA-not-really-a-token"
    Channel.objects.filter(pk=channel.pk).update(access_token=lookalike)
    assert raw_tokens()[0] != lookalike
    assert Channel.objects.get().access_token == lookalike
