"""Token services: issue, hash-only storage, scopes, revocation, last-use bookkeeping."""

import hashlib
from datetime import timedelta

import pytest
from django.utils import timezone

from core.errors import ApplicationError
from tokens.models import AccessToken, Organization
from tokens.services import (
    organization_get_or_create,
    scopes_parse,
    token_authenticate,
    token_create,
    token_revoke,
    token_touch,
)

pytestmark = pytest.mark.django_db


def test_token_create_stores_only_the_hash_and_a_16_char_prefix(org):
    issued = token_create(organization=org, scopes="messages:bulk", name="ci")
    row = AccessToken.objects.get(pk=issued.token.pk)
    assert issued.secret.startswith("kbai_pk_") and len(issued.secret) >= 40
    assert row.token_hash == hashlib.sha256(issued.secret.encode()).hexdigest()
    assert row.prefix == issued.secret[:16]
    assert issued.secret not in str(AccessToken.objects.filter(pk=row.pk).values().first())
    assert row.scopes == ["messages:bulk"]


def test_two_tokens_never_share_a_secret(org):
    assert (
        token_create(organization=org, scopes="messages:bulk").secret
        != token_create(organization=org, scopes="messages:bulk").secret
    )


@pytest.mark.parametrize("raw", ["", " , ", "messages:bulk,nope", ["messages:bulk", "admin"]])
def test_scopes_parse_refuses_empty_and_unknown(raw):
    with pytest.raises(ApplicationError) as info:
        scopes_parse(raw)
    assert info.value.status == 400


def test_scopes_parse_trims_and_dedupes():
    assert scopes_parse(" messages:bulk, templates:read ,messages:bulk") == ["messages:bulk", "templates:read"]


def test_token_create_refuses_naive_expiry(org):
    with pytest.raises(ApplicationError):
        token_create(organization=org, scopes="messages:bulk", expires_at=timezone.now().replace(tzinfo=None))


def test_token_authenticate_none_for_revoked_expired_unknown(org):
    live = token_create(organization=org, scopes="messages:bulk").secret
    expired = token_create(
        organization=org, scopes="messages:bulk", expires_at=timezone.now() - timedelta(days=1)
    ).secret
    revoked = token_create(organization=org, scopes="messages:bulk").secret
    token_revoke(token_or_prefix=revoked)
    assert token_authenticate(raw=live) is not None
    assert token_authenticate(raw=expired) is None
    assert token_authenticate(raw=revoked) is None
    assert token_authenticate(raw=live[:-1] + ("A" if live[-1] != "A" else "B")) is None


def test_token_revoke_by_prefix_whole_or_row_is_idempotent(org):
    issued = token_create(organization=org, scopes="messages:bulk")
    first = token_revoke(token_or_prefix=issued.secret[:16]).revoked_at
    assert first is not None
    # revoking again (whole token, or the row) keeps the first time
    assert token_revoke(token_or_prefix=issued.secret).revoked_at == first
    assert token_revoke(token_or_prefix=issued.token).revoked_at == first


@pytest.mark.parametrize("value", ["", "kbai_pk_", "abc", "kbai_pk_12345678" + "x"])
def test_token_revoke_unknown_or_malformed_is_an_error(org, value):
    token_create(organization=org, scopes="messages:bulk")
    with pytest.raises(ApplicationError) as info:
        token_revoke(token_or_prefix=value)
    assert info.value.status in (400, 404)


def test_token_revoke_ambiguous_prefix_is_a_conflict(org):
    a = token_create(organization=org, scopes="messages:bulk").token
    b = token_create(organization=org, scopes="messages:bulk").token
    AccessToken.objects.filter(pk=b.pk).update(prefix=a.prefix)
    with pytest.raises(ApplicationError) as info:
        token_revoke(token_or_prefix=a.prefix)
    assert info.value.code == "conflict"
    assert not AccessToken.objects.filter(revoked_at__isnull=False).exists()


def test_token_touch_writes_once_between_concurrent_readers(org):
    # given two processes that both read the token before either wrote last_used_at
    issued = token_create(organization=org, scopes="messages:bulk")
    seen_by_a = AccessToken.objects.get(pk=issued.token.pk)
    seen_by_b = AccessToken.objects.get(pk=issued.token.pk)
    # when both touch it, only the first writes
    assert token_touch(token=seen_by_a) is True
    assert token_touch(token=seen_by_b) is False
    # and a minute later it is written again
    assert token_touch(token=seen_by_a, now=timezone.now() + timedelta(seconds=61)) is True


def test_organization_get_or_create_reuses_by_name(db):
    first, created = organization_get_or_create(name=" Acme ")
    again, created_again = organization_get_or_create(name="Acme")
    assert created and not created_again and first.pk == again.pk
    assert Organization.objects.count() == 1
    with pytest.raises(ApplicationError):
        organization_get_or_create(name="  ")
