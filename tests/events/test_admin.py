"""Endpoints in the admin: added (secret shown once), listed with their failures, re-enabled, deleted through the
service; events and deliveries read-only."""

from django.db import connection

from events import endpoints
from events.endpoints import endpoints_active
from events.models import DeliveryStatus, Event, EventDelivery, WebhookEndpoint
from events.outbox import NewEvent, events_record


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
