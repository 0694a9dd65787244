"""create_token and revoke_token: last stdout line is the value, bad arguments exit non-zero."""

import os
import subprocess
import sys
from datetime import timedelta
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from tokens.models import AccessToken
from tokens.services import token_authenticate

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parents[2]


def run(*args: str) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command(*args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def last_line(text: str) -> str:
    return text.strip().splitlines()[-1]


def test_create_token_prints_a_working_token_last(org):
    out, err = run("create_token", "--org", "Acme", "--scopes", "messages:bulk,templates:read", "--name", "ci")
    raw = last_line(out)
    assert raw.startswith("kbai_pk_")
    token = token_authenticate(raw=raw)
    assert token is not None and token.organization == org
    assert token.scopes == ["messages:bulk", "templates:read"] and token.name == "ci"
    assert err == ""


def test_create_token_creates_a_missing_organization_with_a_note(db):
    out, err = run("create_token", "--org", "Newco", "--scopes", "messages:bulk")
    assert token_authenticate(raw=last_line(out)).organization.name == "Newco"
    assert "Newco" in err


def test_create_token_unknown_scope_is_an_error_and_stores_nothing(org):
    with pytest.raises(CommandError, match="Unknown scope"):
        run("create_token", "--org", "Acme", "--scopes", "messages:bulk,root")
    assert not AccessToken.objects.exists()


def test_create_token_expiry_in_the_past_warns_and_the_token_is_born_expired(org):
    out, err = run("create_token", "--org", "Acme", "--scopes", "messages:bulk", "--expires-at", "2020-01-01T00:00:00Z")
    assert "past" in err.lower()
    raw = last_line(out)
    assert token_authenticate(raw=raw) is None
    assert AccessToken.objects.get(prefix=raw[:16]).expires_at.year == 2020


def test_create_token_expiry_in_the_future_with_offset(org):
    when = (timezone.now() + timedelta(days=30)).replace(microsecond=0)
    out, err = run("create_token", "--org", "Acme", "--scopes", "messages:bulk", "--expires-at", when.isoformat())
    assert err == ""
    assert token_authenticate(raw=last_line(out)).expires_at == when


def test_create_token_bad_expiry_is_an_error(org):
    with pytest.raises(CommandError, match="ISO 8601"):
        run("create_token", "--org", "Acme", "--scopes", "messages:bulk", "--expires-at", "tomorrow")


def test_revoke_token_by_prefix_revokes_at_once(org):
    raw = last_line(run("create_token", "--org", "Acme", "--scopes", "messages:bulk")[0])
    out, _ = run("revoke_token", raw[:16])
    assert last_line(out) == raw[:16]
    assert token_authenticate(raw=raw) is None


def test_revoke_token_by_whole_token(org):
    raw = last_line(run("create_token", "--org", "Acme", "--scopes", "messages:bulk")[0])
    run("revoke_token", raw)
    assert AccessToken.objects.get(prefix=raw[:16]).revoked_at is not None


@pytest.mark.parametrize("value", ["kbai_pk_00000000", "nonsense"])
def test_revoke_token_unknown_is_an_error(org, value):
    with pytest.raises(CommandError):
        run("revoke_token", value)


def test_bad_arguments_exit_non_zero_with_a_message_and_no_traceback():
    # given the real manage.py (a process of its own); the argument check fails before any query
    env = {**os.environ, "DEBUG": "true"}
    result = subprocess.run(
        [sys.executable, "manage.py", "create_token", "--org", "Acme", "--scopes", "messages:everything"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "Unknown scope" in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
