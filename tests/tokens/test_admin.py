"""The portal's token pages: create (secret shown once), list, revoke; only for manage_tokens holders."""

import re

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.contrib.messages.storage.cookie import CookieStorage
from django.contrib.sessions.models import Session
from django.test import Client

from tokens.models import AccessToken
from tokens.services import token_authenticate, token_create

pytestmark = pytest.mark.django_db
LIST_URL = "/admin/tokens/accesstoken/"
ADD_URL = "/admin/tokens/accesstoken/add/"


def _staff(username: str, *, manage_tokens: bool):
    user = get_user_model().objects.create_user(username, password="pw-123456", is_staff=True)
    perms = ["view_organization"]
    if manage_tokens:
        perms.append("manage_tokens")
    user.user_permissions.add(*Permission.objects.filter(codename__in=perms))
    return user


@pytest.fixture
def superuser_client(client):
    user = get_user_model().objects.create_superuser("root", "root@example.com", "pw-123456")
    client.force_login(user)
    return client


@pytest.fixture
def manager_client(client):
    client.force_login(_staff("manager", manage_tokens=True))
    return client


def test_creating_a_token_shows_its_secret_once(manager_client, org):
    # when a token manager adds a token with two scopes
    response = manager_client.post(
        ADD_URL,
        {"organization": org.pk, "name": "crm", "scopes": ["messages:bulk", "templates:read"], "expires_at": ""},
    )
    # then the page answering the POST itself carries the whole secret (no redirect), uncached, and it works
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    secret = re.search(r"kbai_pk_[A-Za-z0-9_-]{32,}", response.content.decode()).group(0)
    token = token_authenticate(raw=secret)
    assert token.name == "crm" and token.scopes == ["messages:bulk", "templates:read"]
    assert token.created_by.username == "manager"
    # and the token's page never shows it again
    page = manager_client.get(f"/admin/tokens/accesstoken/{token.pk}/change/").content.decode()
    assert secret not in page and token.prefix in page
    assert secret not in manager_client.get(LIST_URL).content.decode()


def test_the_new_secret_is_in_no_cookie_and_no_session(manager_client, org, monkeypatch):
    # given the secret the next token will get
    random_part = "Zq9" * 14
    monkeypatch.setattr("tokens.services.secrets.token_urlsafe", lambda n: random_part)
    secret = f"kbai_pk_{random_part}"
    # when a token is added in the admin
    response = manager_client.post(ADD_URL, {"organization": org.pk, "name": "crm", "scopes": ["messages:bulk"]})
    token = token_authenticate(raw=secret)
    assert token is not None and secret in response.content.decode()
    # then no Set-Cookie header of the answer carries the secret, nor anything that decodes to it
    set_cookies = [morsel.OutputString() for morsel in response.cookies.values()]
    assert all(secret not in header and token.prefix not in header for header in set_cookies)
    # (the messages cookie is signed and compressed: decode it as Django would)
    if "messages" in response.cookies:
        stored = CookieStorage(response.wsgi_request)._decode(response.cookies["messages"].value) or []
        assert all(secret not in str(message) for message in stored)
    # and neither does any stored session, nor the next page the browser loads
    for session in Session.objects.all():
        assert secret not in str(session.get_decoded())
    follow = manager_client.get(LIST_URL)
    assert secret not in follow.content.decode()
    assert all(secret not in morsel.OutputString() for morsel in follow.cookies.values())


def test_add_form_offers_known_scopes_as_choices_and_refuses_none(manager_client, org):
    page = manager_client.get(ADD_URL).content.decode()
    for scope in ("messages:bulk", "messages:send", "templates:read", "webhooks:manage"):
        assert f'value="{scope}"' in page
    response = manager_client.post(ADD_URL, {"organization": org.pk, "name": "x", "scopes": []})
    assert response.status_code == 200  # the form again, with the error
    response = manager_client.post(ADD_URL, {"organization": org.pk, "name": "x", "scopes": ["root"]})
    assert response.status_code == 200
    assert not AccessToken.objects.exists()


def test_list_shows_prefix_name_organization_scopes_and_dates(manager_client, org):
    issued = token_create(organization=org, scopes="messages:bulk,webhooks:manage", name="billing")
    page = manager_client.get(LIST_URL).content.decode()
    assert issued.token.prefix in page and "billing" in page and "Acme" in page
    assert "messages:bulk, webhooks:manage" in page
    for column in ("column-created_at", "column-last_used_at", "column-expires_at", "column-revoked_at"):
        assert column in page


def test_revoke_action_revokes_the_selected_tokens(manager_client, org):
    keep = token_create(organization=org, scopes="messages:bulk")
    drop = token_create(organization=org, scopes="messages:bulk")
    response = manager_client.post(
        LIST_URL, {"action": "revoke_tokens", "_selected_action": [drop.token.pk]}, follow=True
    )
    assert response.status_code == 200
    assert token_authenticate(raw=drop.secret) is None
    assert token_authenticate(raw=keep.secret) is not None


def test_staff_without_manage_tokens_cannot_see_token_pages(client, org):
    issued = token_create(organization=org, scopes="messages:bulk")
    client.force_login(_staff("clerk", manage_tokens=False))
    assert client.get(LIST_URL).status_code == 403
    assert client.get(ADD_URL).status_code == 403
    assert client.get(f"/admin/tokens/accesstoken/{issued.token.pk}/change/").status_code == 403
    response = client.post(LIST_URL, {"action": "revoke_tokens", "_selected_action": [issued.token.pk]})
    assert response.status_code == 403
    assert token_authenticate(raw=issued.secret) is not None
    # and the admin index does not list them
    assert LIST_URL not in client.get("/admin/").content.decode()


def test_superuser_manages_tokens(superuser_client, org):
    token_create(organization=org, scopes="messages:bulk", name="seen")
    assert superuser_client.get(LIST_URL).status_code == 200
    assert LIST_URL in superuser_client.get("/admin/").content.decode()


def test_tokens_are_never_deleted_from_the_admin(superuser_client, org):
    issued = token_create(organization=org, scopes="messages:bulk")
    assert superuser_client.get(f"/admin/tokens/accesstoken/{issued.token.pk}/delete/").status_code == 403
    assert AccessToken.objects.filter(pk=issued.token.pk).exists()


def test_anonymous_is_sent_to_the_login_page(client):
    response = client.get(LIST_URL)
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


def test_revoke_from_the_tokens_own_page(manager_client, org):
    issued = token_create(organization=org, scopes="messages:bulk")
    page_url = f"/admin/tokens/accesstoken/{issued.token.pk}/change/"
    revoke_url = f"/admin/tokens/accesstoken/{issued.token.pk}/revoke/"
    page = manager_client.get(page_url).content.decode()
    assert f'action="{revoke_url}"' in page and "csrfmiddlewaretoken" in page
    assert manager_client.get(revoke_url).status_code == 405  # never on a GET
    response = manager_client.post(revoke_url, follow=True)
    assert response.redirect_chain[-1][0] == page_url
    assert token_authenticate(raw=issued.secret) is None
    # a revoked token's page offers no revoke button, and shows when it was revoked, to the second
    page = manager_client.get(page_url).content.decode()
    assert f'action="{revoke_url}"' not in page
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", page)


def test_revoke_from_the_page_needs_manage_tokens_and_csrf(client, org):
    issued = token_create(organization=org, scopes="messages:bulk")
    revoke_url = f"/admin/tokens/accesstoken/{issued.token.pk}/revoke/"
    client.force_login(_staff("clerk", manage_tokens=False))
    assert client.post(revoke_url).status_code == 403
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(_staff("manager2", manage_tokens=True))
    assert strict.post(revoke_url).status_code == 403  # no CSRF token
    assert token_authenticate(raw=issued.secret) is not None
    client.force_login(_staff("manager3", manage_tokens=True))
    assert client.post("/admin/tokens/accesstoken/nope/revoke/").status_code == 404
