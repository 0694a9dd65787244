"""The campaigns admin: list, a broadcast page that pages its sends, and actions via the services."""

from unittest import mock

import pytest
from django.urls import reverse

from broadcasts import services
from broadcasts.counts import counts_rebuild
from broadcasts.models import Broadcast, BroadcastStatus, Send, SendStatus
from tests.broadcasts.counts_support import sends_update
from tests.broadcasts.test_api_create import payload


@pytest.fixture
def broadcast(org, channel, template) -> Broadcast:
    with mock.patch("broadcasts.services.enqueue_dispatch"):
        result = services.broadcast_create(organization=org, body=payload(channel, n=120, campaign_name="Promo Nov"))
    broadcast = Broadcast.objects.get(pk=result.body["broadcast_id"])
    sends_update(Send.objects.filter(broadcast=broadcast, index__lt=30), status=SendStatus.SENT)
    sends_update(
        Send.objects.filter(broadcast=broadcast, index__gte=110),
        status=SendStatus.FAILED,
        error_code="131026",
        error_message="Message undeliverable.",
    )
    counts_rebuild(broadcast_ids=[broadcast.id])
    return broadcast


def change_url(broadcast) -> str:
    return reverse("admin:broadcasts_broadcast_change", args=[broadcast.pk])


def test_list_shows_campaigns_with_progress_and_filters(admin_client, broadcast):
    response = admin_client.get(
        reverse("admin:broadcasts_broadcast_changelist"), {"status__exact": "PENDING", "q": "Promo"}
    )
    assert response.status_code == 200
    html = response.content.decode()
    assert "Promo Nov" in html and "Acme" in html
    assert "33%" in html  # 40 of 120 sends no longer pending


def test_broadcast_page_has_counts_errors_and_one_page_of_sends(admin_client, broadcast):
    response = admin_client.get(change_url(broadcast))
    assert response.status_code == 200
    context = response.context
    assert context["campaign_counts"] == {
        "pending": 80,
        "sent": 30,
        "delivered": 0,
        "read": 0,
        "failed": 10,
        "cancelled": 0,
    }
    assert context["campaign_error_rate"] == 0.25
    assert context["campaign_error_codes"] == [("131026", "Message undeliverable.", 10)]
    page = context["sends_page"]
    assert len(page.object_list) == 50 and page.paginator.count == 120
    assert "131026" in response.content.decode()


def test_broadcast_page_filters_and_pages_sends(admin_client, broadcast):
    response = admin_client.get(change_url(broadcast), {"sends_status": "failed"})
    assert [s.index for s in response.context["sends_page"]] == list(range(110, 120))
    third = admin_client.get(change_url(broadcast), {"sends_page": 3}).context["sends_page"]
    assert [s.index for s in third][0] == 100 and len(third.object_list) == 20


def test_buttons_call_the_services(admin_client, broadcast):
    url = reverse("admin:broadcasts_broadcast_action", args=[broadcast.pk, "pause"])
    assert admin_client.get(url).status_code == 405
    assert admin_client.post(url).status_code == 302
    broadcast.refresh_from_db()
    assert broadcast.status == BroadcastStatus.PAUSED and broadcast.paused_reason["code"] == "manual"

    cancel = reverse("admin:broadcasts_broadcast_action", args=[broadcast.pk, "cancel"])
    admin_client.post(cancel)
    broadcast.refresh_from_db()
    assert broadcast.status == BroadcastStatus.CANCELLED
    assert Send.objects.filter(broadcast=broadcast, status=SendStatus.CANCELLED).count() == 80

    # a second cancel is refused by the service and shown as a warning, not an error page
    response = admin_client.post(cancel, follow=True)
    assert response.status_code == 200 and "already CANCELLED" in response.content.decode()


def test_changelist_actions_use_the_services(admin_client, broadcast):
    url = reverse("admin:broadcasts_broadcast_changelist")
    admin_client.post(url, {"action": "pause_selected", "_selected_action": [broadcast.pk]})
    broadcast.refresh_from_db()
    assert broadcast.status == BroadcastStatus.PAUSED
    admin_client.post(url, {"action": "resume_selected", "_selected_action": [broadcast.pk]})
    broadcast.refresh_from_db()
    assert broadcast.status == BroadcastStatus.PENDING


def test_system_fields_are_read_only_and_nothing_is_added_by_hand(admin_client, broadcast):
    response = admin_client.get(change_url(broadcast))
    form_fields = set(response.context["adminform"].form.fields)
    assert form_fields == {"campaign_name"}
    assert admin_client.get(reverse("admin:broadcasts_broadcast_add")).status_code == 403


def test_staff_without_permission_cannot_act(client, django_user_model, broadcast):
    user = django_user_model.objects.create_user("viewer", password="pw", is_staff=True)
    client.force_login(user)
    url = reverse("admin:broadcasts_broadcast_action", args=[broadcast.pk, "cancel"])
    assert client.post(url).status_code == 403
    assert Broadcast.objects.get(pk=broadcast.pk).status == BroadcastStatus.PENDING
