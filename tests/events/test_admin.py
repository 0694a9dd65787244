"""Endpoints in the admin: added (secret shown once), listed with their failures, re-enabled, deleted through the
service; events and deliveries read-only."""

import threading

import pytest
from django.db import connection, connections

from events import admin as events_admin
from events import endpoints
from events.endpoints import endpoints_active
from events.models import DeliveryStatus, Event, EventDelivery, WebhookEndpoint
from events.outbox import NewEvent, events_record
from tests.delivery_support import redis_kill, redis_start


def test_add_shows_the_secret_once_and_never_again(admin_client, org, allow_private):
    # When staff add an endpoint
    response = admin_client.post(
        "/admin/events/webhookendpoint/add/",
        {"organization": org.id, "url": "http://127.0.0.1:8080/hooks", "events": '["message.failed"]'},
    )
    assert response.status_code == 200
    endpoint = WebhookEndpoint.objects.get()
    # Then the secret is shown once, on the page answering the POST, and in no cookie
    assert endpoint.events == ["message.failed"]
    assert endpoint.secret in response.content.decode()
    assert all(endpoint.secret not in morsel.OutputString() for morsel in response.cookies.values())
    listing = admin_client.get("/admin/events/webhookendpoint/")
    change = admin_client.get(f"/admin/events/webhookendpoint/{endpoint.id}/change/")
    assert listing.status_code == change.status_code == 200
    assert endpoint.secret not in listing.content.decode()
    assert endpoint.secret not in change.content.decode()


def test_add_refuses_a_private_url_without_the_setting(admin_client, org):
    response = admin_client.post(
        "/admin/events/webhookendpoint/add/", {"organization": org.id, "url": "http://10.0.0.1/x", "events": "[]"}
    )
    assert response.status_code == 200  # the form again, with the error
    assert "private" in response.content.decode()
    assert not WebhookEndpoint.objects.exists()


def test_disabled_endpoints_are_listed_and_reenabled(admin_client, org, allow_private):
    issued = endpoints.endpoint_create(organization=org, url="http://127.0.0.1:9/x")
    endpoints.endpoint_disable(endpoint_id=issued.endpoint.id, reason="50 consecutive failed deliveries")
    WebhookEndpoint.objects.filter(id=issued.endpoint.id).update(consecutive_failures=50)
    listing = admin_client.get("/admin/events/webhookendpoint/?is_active__exact=0")
    assert issued.endpoint.url in listing.content.decode()
    response = admin_client.post(
        "/admin/events/webhookendpoint/", {"action": "reenable", "_selected_action": [issued.endpoint.id]}
    )
    assert response.status_code == 302
    endpoint = WebhookEndpoint.objects.get()
    assert endpoint.is_active and endpoint.consecutive_failures == 0 and endpoint.disabled_at is None


def test_events_and_deliveries_pages_are_read_only(admin_client):
    for page in ("event", "eventdelivery", "deliveryattempt"):
        assert admin_client.get(f"/admin/events/{page}/").status_code == 200
        assert admin_client.get(f"/admin/events/{page}/add/").status_code == 403


def _event_write(org) -> int:
    """What every publisher does: one event for the organization, to the endpoints it reads from the shared cache."""
    return events_record(events=[NewEvent(organization_id=org.id, type="message.failed", data={}, ordering_key="k")])


def test_delete_from_its_page_goes_through_the_service(admin_client, org, allow_private, enqueued):
    issued = endpoints.endpoint_create(organization=org, url="http://127.0.0.1:9/x")
    assert _event_write(org) == 1  # a pending delivery; and the endpoint list is now cached, as in every worker
    assert [ref.id for ref in endpoints_active()] == [issued.endpoint.id]
    url = f"/admin/events/webhookendpoint/{issued.endpoint.id}/delete/"
    # the confirmation names the endpoint alone: its deliveries and events are kept
    page = admin_client.get(url).content.decode()
    assert issued.endpoint.url in page and "Webhook endpoints: 1" in page and "Event deliveries:" not in page
    assert admin_client.post(url, {"post": "yes"}).status_code == 302
    # then it is soft-deleted as DELETE /v1/webhooks/{id} does: gone from the cached list, its pending delivery failed
    endpoint = WebhookEndpoint.objects.get()
    assert endpoint.deleted_at is not None and not endpoint.is_active
    assert EventDelivery.objects.get().status == DeliveryStatus.FAILED
    assert endpoints_active() == []
    # and the organization's next event writes nothing pointing at it (a row delete left it in the cache: the
    # delivery's foreign key failed at commit, a 500 on every write for the cache's life)
    assert _event_write(org) == 0
    connection.check_constraints()
    # a deleted endpoint has no Delete button any more
    assert admin_client.get(url).status_code == 403


def test_bulk_delete_goes_through_the_service(admin_client, org, allow_private):

    made = [endpoints.endpoint_create(organization=org, url=f"http://127.0.0.1:9/{i}").endpoint for i in range(2)]
    assert len(endpoints_active()) == 2
    response = admin_client.post(
        "/admin/events/webhookendpoint/",
        {"action": "delete_selected", "_selected_action": [e.id for e in made], "post": "yes"},
    )
    assert response.status_code == 302
    assert WebhookEndpoint.objects.count() == 2
    assert not WebhookEndpoint.objects.filter(deleted_at__isnull=True).exists()
    assert endpoints_active() == []
    assert _event_write(org) == 0


def test_events_and_deliveries_are_never_deleted(admin_client, org, allow_private):
    endpoints.endpoint_create(organization=org, url="http://127.0.0.1:9/x")
    _event_write(org)
    event, delivery = Event.objects.get(), EventDelivery.objects.get()
    assert admin_client.get(f"/admin/events/event/{event.pk}/delete/").status_code == 403
    assert admin_client.get(f"/admin/events/eventdelivery/{delivery.pk}/delete/").status_code == 403
    assert "delete_selected" not in admin_client.get("/admin/events/event/").content.decode()


def _created_elsewhere(org, url: str) -> None:
    """Another operator's (or the API's) creation, committed on its own connection."""

    def create() -> None:
        try:
            endpoints.endpoint_create(organization=org, url=url)
        finally:
            connections.close_all()

    thread = threading.Thread(target=create)
    thread.start()
    thread.join(10)


@pytest.mark.django_db(transaction=True)
def test_add_losing_the_race_for_the_last_place_gets_the_form_again(
    admin_client, org, allow_private, settings, monkeypatch
):
    settings.WEBHOOK_ENDPOINTS_MAX = 2
    endpoints.endpoint_create(organization=org, url="http://127.0.0.1:9/0")
    # Given another endpoint created just after this form's own check saw room for one more
    form_clean = events_admin.WebhookEndpointAddForm.clean
    raced = []

    def clean_then_lose_the_race(form):
        cleaned = form_clean(form)
        if not raced:
            raced.append(True)
            _created_elsewhere(org, "http://127.0.0.1:9/winner")
        return cleaned

    monkeypatch.setattr(events_admin.WebhookEndpointAddForm, "clean", clean_then_lose_the_race)
    # When the add form is saved
    typed = {"organization": org.id, "url": "http://127.0.0.1:9/loser", "events": "[]"}
    response = admin_client.post("/admin/events/webhookendpoint/add/", typed)
    # Then it comes back (no 500), with the service's refusal once and what was typed, and nothing of it is stored
    assert response.status_code == 200
    page = response.content.decode()
    assert page.count("the most allowed; delete one first") == 1
    assert "http://127.0.0.1:9/loser" in page
    assert WebhookEndpoint.objects.filter(organization=org).count() == 2
    assert not WebhookEndpoint.objects.filter(url="http://127.0.0.1:9/loser").exists()


def test_ping_with_redis_down_is_a_message_not_a_500(admin_client, org, endpoint_for):
    endpoint, _ = endpoint_for(org, "http://127.0.0.1:9/x")
    redis_kill()
    try:
        response = admin_client.post(f"/admin/events/webhookendpoint/{endpoint.id}/ping/")
        assert response.status_code == 302
        assert response["Location"] == f"/admin/events/webhookendpoint/{endpoint.id}/change/"
        page = admin_client.get(response["Location"]).content.decode()
        assert "Redis is unavailable: try again" in page
    finally:
        redis_start()


def test_rotating_the_secret_of_an_endpoint_deleted_meanwhile_is_a_message(
    admin_client, org, allow_private, monkeypatch
):
    endpoint = endpoints.endpoint_create(organization=org, url="http://127.0.0.1:9/x").endpoint
    # Given the endpoint deleted (by the API) between the button's lookup and the rotation
    rotate = endpoints.endpoint_secret_rotate

    def deleted_first(**kwargs):
        endpoints.endpoint_delete(organization=org, endpoint_id=endpoint.id)
        return rotate(**kwargs)

    monkeypatch.setattr(endpoints, "endpoint_secret_rotate", deleted_first)
    response = admin_client.post(f"/admin/events/webhookendpoint/{endpoint.id}/rotate-secret/", follow=True)
    assert response.status_code == 200
    assert "Webhook endpoint not found." in response.content.decode()
    assert WebhookEndpoint.objects.get().previous_secret is None
