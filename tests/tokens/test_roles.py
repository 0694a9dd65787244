"""The admin's roles (tokens/roles.py): the groups the migration creates, what a read-only operator can and cannot
do, and a token's prefix and name shown on a broadcast's page to token managers only."""

from unittest import mock

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.test import Client
from django.urls import reverse

from broadcasts import services
from broadcasts.models import Broadcast, Send
from broadcasts.rules.suppressions import suppression_add
from events import endpoints
from tests.broadcasts.test_api_create import payload
from tokens.admin_visibility import HIDDEN
from tokens.models import AccessToken
from tokens.roles import OPERATORS, TOKEN_MANAGERS
from tokens.services import token_create

pytestmark = pytest.mark.django_db

# (model's admin URL name, what its list shows): the operational pages an operator reads.
OPERATIONAL = [
    "broadcasts_broadcast",
    "broadcasts_send",
    "broadcasts_suppression",
    "broadcasts_ratecard",
    "templates_registry_channel",
    "templates_registry_template",
    "events_webhookendpoint",
    "events_event",
    "events_eventdelivery",
    "tokens_organization",
]


def _member(username: str, *groups: str) -> Client:
    user = get_user_model().objects.create_user(username, password="pw-123456", is_staff=True)
    user.groups.add(*Group.objects.filter(name__in=groups))
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def token(org) -> AccessToken:
    return token_create(organization=org, scopes=["messages:bulk"], name="crm-nightly").token


@pytest.fixture
def broadcast(org, channel, template, token) -> Broadcast:
    with mock.patch("broadcasts.services.enqueue_dispatch"):
        result = services.broadcast_create(organization=org, body=payload(channel, n=2), token=token)
    return Broadcast.objects.get(pk=result.body["broadcast_id"])


@pytest.fixture
def operator() -> Client:
    return _member("watcher", OPERATORS)


def test_the_migration_made_both_groups():
    operators = set(Group.objects.get(name=OPERATORS).permissions.values_list("content_type__app_label", "codename"))
    assert {
        ("broadcasts", "view_broadcast"),
        ("broadcasts", "view_send"),
        ("broadcasts", "view_suppression"),
        ("templates_registry", "view_channel"),
        ("templates_registry", "view_template"),
        ("events", "view_webhookendpoint"),
        ("tokens", "view_organization"),
    } <= operators
    assert all(codename.startswith("view_") for _, codename in operators)  # no add, change, delete
    assert ("tokens", "view_accesstoken") not in operators and ("tokens", "manage_tokens") not in operators
    managers = set(Group.objects.get(name=TOKEN_MANAGERS).permissions.values_list("codename", flat=True))
    assert {"manage_tokens", "view_accesstoken", "add_accesstoken", "change_accesstoken"} <= managers
    assert "delete_accesstoken" not in managers


def test_an_operator_reads_every_page_and_changes_nothing(operator, broadcast, channel, template, org):
    send = Send.objects.filter(broadcast=broadcast).first()
    entry, _ = suppression_add(organization_id=org.id, to="+34612345678", source="api")
    endpoint = endpoints.endpoint_create(organization=org, url="https://example.com/hook").endpoint
    objects = {
        "broadcasts_broadcast": broadcast,
        "broadcasts_send": send,
        "broadcasts_suppression": entry,
        "templates_registry_channel": channel,
        "templates_registry_template": template,
        "events_webhookendpoint": endpoint,
        "tokens_organization": org,
    }
    for name in OPERATIONAL:
        page = operator.get(reverse(f"admin:{name}_changelist"))
        assert page.status_code == 200, name
        html = page.content.decode()
        assert "addlink" not in html and 'value="delete_selected"' not in html, name
        assert reverse(f"admin:{name}_add") not in html, name
    for name, obj in objects.items():
        url = reverse(f"admin:{name}_change", args=[obj.pk])
        html = operator.get(url).content.decode()
        assert 'name="_save"' not in html and "deletelink" not in html, name
        assert operator.post(url, {}).status_code == 403, name
        assert operator.post(reverse(f"admin:{name}_delete", args=[obj.pk]), {"post": "yes"}).status_code == 403
    # the page's own buttons and the list's actions refuse too: nothing moved, nothing removed
    cancel = reverse("admin:broadcasts_broadcast_action", args=[broadcast.pk, "cancel"])
    assert operator.post(cancel).status_code == 403
    rotate = reverse("admin:events_webhookendpoint_rotate_secret", args=[endpoint.pk])
    assert operator.post(rotate).status_code == 403
    listing = reverse("admin:broadcasts_suppression_changelist")
    operator.post(listing, {"action": "remove_selected", "_selected_action": [entry.pk]})
    broadcast.refresh_from_db()
    assert broadcast.status == "PENDING"
    assert type(entry).objects.filter(pk=entry.pk).exists()


def test_an_operator_sees_no_token_anywhere(operator, broadcast, token):
    assert operator.get(reverse("admin:tokens_accesstoken_changelist")).status_code == 403
    assert operator.get(reverse("admin:tokens_accesstoken_change", args=[token.pk])).status_code == 403
    assert "accesstoken" not in operator.get(reverse("admin:index")).content.decode()
    page = operator.get(reverse("admin:broadcasts_broadcast_change", args=[broadcast.pk])).content.decode()
    assert token.prefix not in page and "crm-nightly" not in page
    assert HIDDEN in page


def test_a_token_manager_sees_the_broadcasts_token(broadcast, token):
    manager = _member("keys", OPERATORS, TOKEN_MANAGERS)
    page = manager.get(reverse("admin:broadcasts_broadcast_change", args=[broadcast.pk])).content.decode()
    assert token.prefix in page and "crm-nightly" in page and HIDDEN not in page
    # linked to the token's own page, which a token manager may open
    token_url = reverse("admin:tokens_accesstoken_change", args=[token.pk])
    assert token_url in page and manager.get(token_url).status_code == 200
