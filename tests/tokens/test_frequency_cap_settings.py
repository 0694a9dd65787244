"""The marketing frequency cap as a person sets it (docs/operations.md): ``update_organization
--marketing-frequency-cap N/DAYS|off`` and the admin's organization page, both through one parser: a bad value is a
clear error and changes nothing."""

import os
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command

from tokens.frequency_cap import FrequencyCap, InvalidFrequencyCap, frequency_cap_parse
from tokens.models import Organization

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parents[2]
BAD = ["0/7", "3/0", "x", "3/", "/7", "-1/7", "3/-7", "3/366", "3.5/7", "3/7/1", "", " "]


def run(*args: str) -> str:
    out = StringIO()
    call_command(*args, stdout=out, stderr=StringIO())
    return out.getvalue()


def cap_of(org: Organization) -> tuple:
    org.refresh_from_db()
    return org.marketing_frequency_cap, org.marketing_frequency_days


@pytest.mark.parametrize(
    ("value", "expected"), [("1/7", (1, 7)), ("3/30", (3, 30)), (" 2 / 365 ", (2, 365)), ("10/1", (10, 1))]
)
def test_the_command_sets_the_cap(value, expected):
    org = Organization.objects.create(name="Acme")
    out = run("update_organization", "--org", "Acme", "--marketing-frequency-cap", value)
    assert out.strip().splitlines()[-1] == str(org.id)
    assert "marketing frequency cap set to" in out
    assert cap_of(org) == expected


def test_off_clears_both_and_the_same_value_says_already():
    org = Organization.objects.create(name="Acme", marketing_frequency_cap=3, marketing_frequency_days=7)
    assert "already 3 per 7 days" in run("update_organization", "--org", "Acme", "--marketing-frequency-cap", "3/7")
    out = run("update_organization", "--org", "Acme", "--marketing-frequency-cap", "OFF")
    assert "set to off" in out and out.strip().splitlines()[-1] == str(org.id)
    assert cap_of(org) == (None, None)


@pytest.mark.parametrize("value", BAD)
def test_the_command_refuses_a_bad_cap_and_changes_nothing(value):
    org = Organization.objects.create(name="Acme", marketing_frequency_cap=2, marketing_frequency_days=7)
    with pytest.raises(CommandError, match="--marketing-frequency-cap must be N/DAYS or off"):
        # "=": argparse would read "-1/7" as an option of its own
        run("update_organization", "--org", "Acme", f"--marketing-frequency-cap={value}", "--messaging-limit", "250")
    # Nothing changed: neither the cap nor the limit given with it
    assert cap_of(org) == (2, 7)
    org.refresh_from_db()
    assert org.messaging_limit is None


def test_a_bad_cap_exits_non_zero_through_manage_py():
    result = subprocess.run(
        [sys.executable, "manage.py", "update_organization", "--org", "Acme", "--marketing-frequency-cap", "0/7"],
        cwd=ROOT,
        env={**os.environ, "DEBUG": "true"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "--marketing-frequency-cap must be N/DAYS or off" in result.stderr and "N must be 1" in result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""


def test_the_parser_names_what_is_wrong():
    assert frequency_cap_parse("3/7") == FrequencyCap(3, 7)
    assert frequency_cap_parse("off") is None
    with pytest.raises(InvalidFrequencyCap, match="DAYS must be 1 to 365"):
        frequency_cap_parse("3/400")
    with pytest.raises(InvalidFrequencyCap, match="N must be 1"):
        frequency_cap_parse("0/7")


@pytest.fixture
def admin_client(client):
    client.force_login(get_user_model().objects.create_superuser("root", "root@example.com", "pw-123456"))
    return client


def test_the_admin_sets_shows_and_clears_the_cap(admin_client):
    org = Organization.objects.create(name="Acme")
    url = f"/admin/tokens/organization/{org.id}/change/"
    assert "Marketing frequency cap" in admin_client.get(url).content.decode()
    assert admin_client.post(url, {"name": "Acme", "limit": "", "frequency_cap": "2/7"}).status_code == 302
    assert cap_of(org) == (2, 7)
    assert 'value="2/7"' in admin_client.get(url).content.decode()
    assert "2 per 7 days" in admin_client.get("/admin/tokens/organization/").content.decode()
    # Empty is off
    assert admin_client.post(url, {"name": "Acme", "limit": "", "frequency_cap": ""}).status_code == 302
    assert cap_of(org) == (None, None)


@pytest.mark.parametrize("value", [v for v in BAD if v.strip()])
def test_the_admin_refuses_a_bad_cap_and_changes_nothing(admin_client, value):
    org = Organization.objects.create(name="Acme", marketing_frequency_cap=2, marketing_frequency_days=7)
    answer = admin_client.post(
        f"/admin/tokens/organization/{org.id}/change/", {"name": "Renamed", "limit": "", "frequency_cap": value}
    )
    assert answer.status_code == 200 and "frequency cap" in answer.content.decode().lower()
    assert "errorlist" in answer.content.decode()
    org.refresh_from_db()
    assert (org.name, org.marketing_frequency_cap, org.marketing_frequency_days) == ("Acme", 2, 7)


def test_a_new_organization_takes_a_cap_in_the_admin(admin_client):
    answer = admin_client.post(
        "/admin/tokens/organization/add/", {"name": "Fresh", "limit": "", "frequency_cap": "1/1"}
    )
    assert answer.status_code == 302
    assert cap_of(Organization.objects.get(name="Fresh")) == (1, 1)
