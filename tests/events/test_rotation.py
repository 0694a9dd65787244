"""Secret rotation (docs/api.md): POST /v1/webhooks/{id}/rotate-secret, both secrets signing during the overlap,
the new one alone after it; the admin's button."""

import base64
import time
from datetime import timedelta

import pytest
from django.db.models import TextField
from django.db.models.functions import Cast
from django.utils import timezone

from broadcasts.notifications import message_events_publish
from events import endpoints, outbox
from events.models import WebhookEndpoint
from tests.events.conftest import contract_signature_valid, standard_webhooks_valid
from tests.events.helpers import broadcast_with_sends

URL = "/v1/webhooks"


@pytest.fixture
def broadcast(org, channel, template):
    return broadcast_with_sends(org=org, channel=channel, template=template, count=3)


def deliver(broadcast, endpoint, index: int) -> None:
    message_events_publish(send_ids=[broadcast.sends.get(index=index).id], status="SENT")
    assert outbox.endpoint_deliver_due(endpoint_id=endpoint.id) == {"delivered": 1, "failed_attempts": 0}


def verified_by(request: dict, secret: str) -> tuple[bool, bool]:
    """(the standardwebhooks library accepts, the contract's rule accepts)."""
    return standard_webhooks_valid(request, secret), contract_signature_valid(request, secret)


def test_rotate_answers_the_new_secret_once(api, org, endpoint_for):
    endpoint, old = endpoint_for(org, "http://127.0.0.1:9/x")
    before = timezone.now()
    response = api.post(f"{URL}/{endpoint.id}/rotate-secret")
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"id", "secret", "previous_secret_expires_at"}
    assert body["id"] == endpoint.id
    new = body["secret"]
    assert new != old and new.startswith("whsec_")
    assert len(base64.b64decode(new.removeprefix("whsec_"), validate=True)) == 32
    # The old secret is kept for the overlap (24 h by default), both encrypted at rest
    endpoint.refresh_from_db()
    assert (endpoint.secret, endpoint.previous_secret) == (new, old)
    overlap = endpoint.previous_secret_expires_at - before
    assert timedelta(hours=24) <= overlap <= timedelta(hours=24, seconds=5)
    raw = WebhookEndpoint.objects.annotate(
        s=Cast("secret", TextField()), p=Cast("previous_secret", TextField())
    ).values_list("s", "p")
    [(stored_secret, stored_previous)] = raw
    assert stored_secret.startswith("enc1:") and stored_previous.startswith("enc1:")
    assert old not in stored_previous and new not in stored_secret
    # And neither secret is ever shown again
    listed = api.get(URL).content.decode() + api.get(f"{URL}/{endpoint.id}").content.decode()
    assert new not in listed and old not in listed
    assert api.get(f"{URL}/{endpoint.id}").json()["previous_secret_expires_at"] == body["previous_secret_expires_at"]


def test_rotate_is_404_for_another_organizations_endpoint(api, other_org, endpoint_for):
    theirs, secret = endpoint_for(other_org, "http://127.0.0.1:9/x")
    response = api.post(f"{URL}/{theirs.id}/rotate-secret")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    theirs.refresh_from_db()
    assert theirs.secret == secret and theirs.previous_secret is None


def test_rotate_is_404_for_a_deleted_or_malformed_id(api, org, endpoint_for):
    endpoint, _ = endpoint_for(org, "http://127.0.0.1:9/x")
    endpoints.endpoint_delete(organization=org, endpoint_id=endpoint.id)
    assert api.post(f"{URL}/{endpoint.id}/rotate-secret").status_code == 404
    assert api.post(f"{URL}/not-an-id/rotate-secret").status_code == 404


def test_rotate_needs_the_webhooks_manage_scope(make_token, anon_api, org, endpoint_for):
    endpoint, secret = endpoint_for(org, "http://127.0.0.1:9/x")
    anon_api.credentials(HTTP_AUTHORIZATION=f"Bearer {make_token(scopes=['messages:bulk'])}")
    assert anon_api.post(f"{URL}/{endpoint.id}/rotate-secret").status_code == 403
    anon_api.credentials()
    assert anon_api.post(f"{URL}/{endpoint.id}/rotate-secret").status_code == 401
    endpoint.refresh_from_db()
    assert endpoint.secret == secret


def test_during_the_overlap_both_secrets_verify_with_both_verifiers(
    api, org, broadcast, receiver, endpoint_for, enqueued
):
    # Given an endpoint whose secret was rotated
    endpoint, old = endpoint_for(org, receiver.url)
    new = api.post(f"{URL}/{endpoint.id}/rotate-secret").json()["secret"]
    # When an event is delivered during the overlap
    deliver(broadcast, endpoint, 0)
    [request] = receiver.requests
    # Then each header carries two signatures, the new one first
    ours = request["headers"]["X-Webhook-Signature"].split(" ")
    standard = request["headers"]["webhook-signature"].split(" ")
    assert len(ours) == len(standard) == 2
    assert contract_signature_valid({**request, "headers": {**request["headers"], "X-Webhook-Signature": ours[0]}}, new)
    assert standard_webhooks_valid(
        {**request, "headers": {**request["headers"], "webhook-signature": standard[0]}}, new
    )
    # And a receiver holding either secret accepts it, with either verifier
    assert verified_by(request, new) == (True, True)
    assert verified_by(request, old) == (True, True)


def test_after_the_overlap_only_the_new_secret_signs(api, org, broadcast, receiver, endpoint_for, enqueued, settings):
    # Given a rotation with a 1-second overlap
    settings.SECRET_ROTATION_OVERLAP_SECONDS = 1
    endpoint, old = endpoint_for(org, receiver.url)
    new = api.post(f"{URL}/{endpoint.id}/rotate-secret").json()["secret"]
    deliver(broadcast, endpoint, 0)
    assert verified_by(receiver.requests[0], old) == (True, True)
    # When the overlap has passed
    time.sleep(1.2)
    deliver(broadcast, endpoint, 1)
    request = receiver.requests[1]
    # Then only the new secret signs
    assert " " not in request["headers"]["X-Webhook-Signature"] and " " not in request["headers"]["webhook-signature"]
    assert verified_by(request, new) == (True, True)
    assert verified_by(request, old) == (False, False)


def test_without_an_overlap_the_old_secret_stops_at_once(org, broadcast, receiver, endpoint_for, enqueued, settings):
    settings.SECRET_ROTATION_OVERLAP_SECONDS = 0
    endpoint, old = endpoint_for(org, receiver.url)
    new = endpoints.endpoint_secret_rotate(organization=org, endpoint_id=endpoint.id).secret
    endpoint.refresh_from_db()
    assert endpoint.previous_secret is None and endpoint.previous_secret_expires_at is None
    deliver(broadcast, endpoint, 0)
    assert verified_by(receiver.requests[0], new) == (True, True)
    assert verified_by(receiver.requests[0], old) == (False, False)


def test_a_second_rotation_drops_the_oldest_secret(org, broadcast, receiver, endpoint_for, enqueued):
    endpoint, first = endpoint_for(org, receiver.url)
    second = endpoints.endpoint_secret_rotate(organization=org, endpoint_id=endpoint.id).secret
    third = endpoints.endpoint_secret_rotate(organization=org, endpoint_id=endpoint.id).secret
    deliver(broadcast, endpoint, 0)
    [request] = receiver.requests
    assert verified_by(request, third) == verified_by(request, second) == (True, True)
    assert verified_by(request, first) == (False, False)


# --- the admin -------------------------------------------------------------------------------------


def test_admin_rotate_button_shows_the_new_secret_once(admin_client, org, endpoint_for):
    endpoint, old = endpoint_for(org, "http://127.0.0.1:9/x")
    page = f"/admin/events/webhookendpoint/{endpoint.id}/change/"
    # The endpoint's page offers the button (a POST form)
    change = admin_client.get(page).content.decode()
    assert f"/admin/events/webhookendpoint/{endpoint.id}/rotate-secret/" in change and 'id="rotate-secret"' in change
    # A GET does nothing
    assert admin_client.get(f"/admin/events/webhookendpoint/{endpoint.id}/rotate-secret/").status_code == 405
    endpoint.refresh_from_db()
    assert endpoint.secret == old
    # When staff press it
    response = admin_client.post(f"/admin/events/webhookendpoint/{endpoint.id}/rotate-secret/")
    assert response.status_code == 200
    endpoint.refresh_from_db()
    new = endpoint.secret
    # Then the new secret is on that page only: not in a cookie, not on the endpoint's page afterwards
    assert new != old and endpoint.previous_secret == old
    html = response.content.decode()
    assert new in html and old not in html and "will not be shown again" in html
    assert all(new not in morsel.OutputString() for morsel in response.cookies.values())
    after = admin_client.get(page).content.decode()
    assert new not in after and old not in after


def test_admin_reenable_button_on_a_disabled_endpoint(
    admin_client, org, endpoint_for, enqueued, django_capture_on_commit_callbacks
):
    endpoint, _ = endpoint_for(org, "http://127.0.0.1:9/x")
    page = f"/admin/events/webhookendpoint/{endpoint.id}/change/"
    assert 'id="reenable"' not in admin_client.get(page).content.decode()  # only offered when disabled
    endpoints.endpoint_disable(endpoint_id=endpoint.id, reason="50 consecutive failed deliveries")
    WebhookEndpoint.objects.filter(id=endpoint.id).update(consecutive_failures=50)
    assert 'id="reenable"' in admin_client.get(page).content.decode()
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(f"/admin/events/webhookendpoint/{endpoint.id}/reenable/")
    assert response.status_code == 302 and response["Location"] == page
    endpoint.refresh_from_db()
    assert endpoint.is_active and endpoint.consecutive_failures == 0 and endpoint.disabled_at is None
    assert enqueued == [endpoint.id]


def test_admin_buttons_need_the_change_permission(client, org, endpoint_for, django_user_model):
    endpoint, secret = endpoint_for(org, "http://127.0.0.1:9/x")
    staff = django_user_model.objects.create_user(username="viewer", password="pw-viewer-1", is_staff=True)
    client.force_login(staff)
    for button in ("rotate-secret", "reenable", "ping"):
        response = client.post(f"/admin/events/webhookendpoint/{endpoint.id}/{button}/")
        assert response.status_code == 403, button
    endpoint.refresh_from_db()
    assert endpoint.secret == secret
