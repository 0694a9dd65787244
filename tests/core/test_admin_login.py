"""The admin's login throttle (config/admin_settings.py, django-axes) and its password rules."""

from datetime import timedelta

import pytest
from axes.models import AccessAttempt
from django.contrib.auth import get_user_model, password_validation
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.test import Client
from django.utils import timezone

pytestmark = pytest.mark.django_db
LOGIN = "/admin/login/"
PASSWORD = "Harbour-Lantern-42"
ADDRESS, OTHER_ADDRESS = "203.0.113.7", "198.51.100.9"


@pytest.fixture(autouse=True)
def _fast_hashing(settings):
    # Tens of logins per test: the production hasher's deliberate slowness is not what is tested here.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def staff():
    make = get_user_model().objects.create_user
    return make("alice", password=PASSWORD, is_staff=True), make("bob", password=PASSWORD, is_staff=True)


def _login(username: str, password: str, address: str = ADDRESS, **headers):
    client = Client(REMOTE_ADDR=address, **headers)
    return client, client.post(LOGIN, {"username": username, "password": password, "next": "/admin/"})


def _logged_in(client: Client) -> bool:
    return client.get("/admin/").status_code == 200


def _fail_five_times(username: str) -> list[int]:
    return [_login(username, "wrong-guess")[1].status_code for _ in range(5)]


def test_the_sixth_login_is_refused_even_with_the_right_password(staff):
    # the first four failures answer the form again; the fifth locks that username from that address
    assert _fail_five_times("alice") == [200, 200, 200, 200, 429]
    client, response = _login("alice", PASSWORD)
    assert response.status_code == 429
    page = response.content.decode()
    assert "Too many failed logins" in page and "15 minutes" in page and "axes_reset_username" in page
    assert not _logged_in(client)
    # a forwarded-for header of the client's choosing is not a new address
    client, response = _login("alice", PASSWORD, HTTP_X_FORWARDED_FOR="192.0.2.1")
    assert response.status_code == 429 and not _logged_in(client)


def test_another_user_or_address_is_not_affected(staff):
    _fail_five_times("alice")
    client, response = _login("bob", PASSWORD)
    assert response.status_code == 302 and _logged_in(client)
    client, response = _login("alice", PASSWORD, address=OTHER_ADDRESS)
    assert response.status_code == 302 and _logged_in(client)


def test_a_good_login_clears_the_failures_before_it(staff):
    for _ in range(4):
        _login("alice", "wrong-guess")
    assert _login("alice", PASSWORD)[1].status_code == 302
    assert _fail_five_times("alice")[:4] == [200, 200, 200, 200]  # counting starts again


def test_an_administrator_unlocks_a_username(staff):
    _fail_five_times("alice")
    call_command("axes_reset_username", "alice")
    client, response = _login("alice", PASSWORD)
    assert response.status_code == 302 and _logged_in(client)


def test_the_lockout_ends_with_the_cool_off(staff, settings):
    _fail_five_times("alice")
    AccessAttempt.objects.update(attempt_time=timezone.now() - settings.AXES_COOLOFF_TIME - timedelta(seconds=1))
    client, response = _login("alice", PASSWORD)
    assert response.status_code == 302 and _logged_in(client)


@pytest.mark.parametrize("weak", ["short1", "password123", "12345678901", "alice@example"])
def test_weak_passwords_are_refused(staff, weak):
    alice = staff[0]
    alice.email, alice.last_name = "alice@example.com", "Smith"
    with pytest.raises(ValidationError):
        password_validation.validate_password(weak, user=alice)
    password_validation.validate_password(PASSWORD, user=alice)
