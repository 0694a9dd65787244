"""The messaging limit as a person sets it (docs/operations.md): update_organization and create_channel take numbers
and Meta's tier names; the admin's organization form takes either and shows the tier name; a bad value changes
nothing; every change goes through the one writer, which announces it on commit."""

import os
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command

from tokens.limits import messaging_limit_changed
from tokens.models import Organization

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parents[2]


def run(*args: str) -> str:
    out = StringIO()
    call_command(*args, stdout=out, stderr=StringIO())
    return out.getvalue()


@pytest.fixture
def announced():
    """The changes announced (on commit) to the broadcasts app."""
    seen = []

    def receiver(sender, **kwargs):
        seen.append((kwargs["organization_id"], kwargs["limit"], kwargs["previous"]))

    messaging_limit_changed.connect(receiver, dispatch_uid="test-announced")
    yield seen
    messaging_limit_changed.disconnect(dispatch_uid="test-announced")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2000", 2000),
        ("TIER_2K", 2000),
        ("tier_10k", 10000),
        ("TIER_100K", 100000),
        ("250", 250),
        ("TIER_250", 250),
        ("unlimited", None),
        ("TIER_UNLIMITED", None),
    ],
)
def test_update_organization_sets_the_limit_by_number_or_tier_name(value, expected, django_capture_on_commit_callbacks):
    org = Organization.objects.create(name="Acme", messaging_limit=1000 if expected is None else None)
    with django_capture_on_commit_callbacks(execute=True):
        out = run("update_organization", "--org", "Acme", "--messaging-limit", value)
    assert out.strip().splitlines()[-1] == str(org.id)
    org.refresh_from_db()
    assert org.messaging_limit == expected
    assert org.messaging_limit_set_at is not None


@pytest.mark.parametrize("value", ["TIER_5K", "TIER_1K", "300", "abc", "-5", "", "2000.5"])
def test_update_organization_refuses_a_bad_value_and_changes_nothing(value, announced):
    org = Organization.objects.create(name="Acme", messaging_limit=250)
    with pytest.raises(CommandError, match="--messaging-limit must be"):
        run("update_organization", "--org", "Acme", "--messaging-limit", value)
    org.refresh_from_db()
    assert org.messaging_limit == 250 and org.messaging_limit_set_at is None
    assert announced == []


def test_update_organization_of_an_unknown_organization_is_an_error():
    with pytest.raises(CommandError, match="No organization"):
        run("update_organization", "--org", "Nobody", "--messaging-limit", "TIER_2K")
    assert not Organization.objects.exists()


def test_a_change_is_announced_on_commit_and_the_same_value_is_not(announced, django_capture_on_commit_callbacks):
    org = Organization.objects.create(name="Acme", messaging_limit=250)
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        run("update_organization", "--org", "Acme", "--messaging-limit", "TIER_2K")
    assert len(callbacks) == 1
    assert announced == [(org.id, 2000, 250)]
    with django_capture_on_commit_callbacks(execute=True):
        out = run("update_organization", "--org", "Acme", "--messaging-limit", "2000")
    assert "already" in out and announced == [(org.id, 2000, 250)]


def test_update_organization_bad_value_exits_non_zero_through_manage_py():
    result = subprocess.run(
        [sys.executable, "manage.py", "update_organization", "--org", "Acme", "--messaging-limit", "TIER_3K"],
        cwd=ROOT,
        env={**os.environ, "DEBUG": "true"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "--messaging-limit must be" in result.stderr and "Traceback" not in result.stderr
    assert result.stdout == ""


def test_create_channel_takes_a_tier_name():
    args = ["--org", "Tiered", "--phone-number-id", "100000000000077", "--waba-id", "200000000000077"]
    run("create_channel", *args, "--access-token", "T", "--messaging-limit", "TIER_10K")
    assert Organization.objects.get(name="Tiered").messaging_limit == 10000


def test_create_channel_refuses_a_tier_that_does_not_exist():
    args = ["--org", "Tiered", "--phone-number-id", "100000000000078", "--waba-id", "200000000000078"]
    with pytest.raises(CommandError, match="TIER_2K"):
        run("create_channel", *args, "--access-token", "T", "--messaging-limit", "TIER_20K")
    assert not Organization.objects.filter(name="Tiered").exists()


@pytest.fixture
def admin_client(client):
    client.force_login(get_user_model().objects.create_superuser("root", "root@example.com", "pw-123456"))
    return client


def test_admin_form_takes_a_tier_name_and_shows_it(admin_client, announced, django_capture_on_commit_callbacks):
    org = Organization.objects.create(name="Acme", messaging_limit=250)
    url = f"/admin/tokens/organization/{org.id}/change/"
    page = admin_client.get(url).content.decode()
    assert 'value="TIER_250"' in page

    with django_capture_on_commit_callbacks(execute=True):
        answer = admin_client.post(url, {"name": "Acme", "limit": "TIER_2K"})
    assert answer.status_code == 302, answer.content.decode()[:2000]
    org.refresh_from_db()
    assert org.messaging_limit == 2000 and org.messaging_limit_set_at is not None
    assert announced == [(org.id, 2000, 250)]
    assert "2,000 (TIER_2K)" in admin_client.get("/admin/tokens/organization/").content.decode()
    assert 'value="TIER_2K"' in admin_client.get(url).content.decode()

    # A number works as well; the same limit again changes nothing (no new count, no wake)
    stamped = org.messaging_limit_set_at
    with django_capture_on_commit_callbacks(execute=True):
        assert admin_client.post(url, {"name": "Acme", "limit": "2000"}).status_code == 302
    org.refresh_from_db()
    assert org.messaging_limit_set_at == stamped and len(announced) == 1


@pytest.mark.parametrize("value", ["TIER_5K", "300", "lots"])
def test_admin_form_refuses_a_bad_limit_and_changes_nothing(admin_client, value):
    org = Organization.objects.create(name="Acme", messaging_limit=250)
    answer = admin_client.post(f"/admin/tokens/organization/{org.id}/change/", {"name": "Renamed", "limit": value})
    assert answer.status_code == 200 and "Not a messaging limit" in answer.content.decode()
    org.refresh_from_db()
    assert (org.name, org.messaging_limit, org.messaging_limit_set_at) == ("Acme", 250, None)


def test_admin_form_empty_is_unlimited_and_a_new_organization_takes_a_tier(admin_client):
    answer = admin_client.post("/admin/tokens/organization/add/", {"name": "Fresh", "limit": "TIER_100K"})
    assert answer.status_code == 302
    assert Organization.objects.get(name="Fresh").messaging_limit == 100000
    org = Organization.objects.get(name="Fresh")
    assert (
        admin_client.post(f"/admin/tokens/organization/{org.id}/change/", {"name": "Fresh", "limit": ""}).status_code
        == 302
    )
    org.refresh_from_db()
    assert org.messaging_limit is None
