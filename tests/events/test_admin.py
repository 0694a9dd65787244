"""Endpoints in the admin: added (secret shown once), listed with their failures, re-enabled."""

from events import endpoints
from events.models import WebhookEndpoint


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
