"""Template pauses (broadcasts/rules/template_pauses.py): a PAUSED/DISABLED template update or a 132015/132016 failure
pauses the running broadcasts of the template; resume is refused while it is not APPROVED; a broadcast falling due
then is held PAUSED. The real path (worker, sandbox, live webhooks) is in tests/broadcasts/delivery/
test_template_health.py."""

from datetime import timedelta

import orjson
import pytest
from django.utils import timezone

from broadcasts import lifecycle
from broadcasts.delivery.claims import Claimed
from broadcasts.delivery.outcomes import outcome_row
from broadcasts.delivery.recovery import broadcasts_start_due
from broadcasts.models import Broadcast, BroadcastStatus, Send, SendStatus
from events.models import Event, WebhookEndpoint
from templates_registry.models import Template
from tests.delivery_support import broadcast_make, numbers
from tests.events.helpers import broadcast_with_sends, meta_envelope, meta_signature, status_entry
from whatsapp.client import SendResult
from whatsapp.errors import ErrorClass, classify, parse_graph_error

URL = "/v1/webhooks/whatsapp"
SECRET = "meta-app-secret"


@pytest.fixture(autouse=True)
def _meta_settings(settings):
    settings.WHATSAPP_APP_SECRET = SECRET


def post_signed(client, payload):
    body = orjson.dumps(payload)
    response = client.post(
        URL, data=body, content_type="application/json", HTTP_X_HUB_SIGNATURE_256=meta_signature(body, SECRET)
    )
    assert response.status_code == 200, response.content
    return response


def template_update(template, event, *, time=1_790_000_000):
    envelope = meta_envelope(
        field="message_template_status_update",
        value={
            "event": event,
            "message_template_id": 1,
            "message_template_name": template.name,
            "message_template_language": template.language,
            "reason": "NONE",
        },
        waba_id=template.waba_id,
    )
    envelope["entry"][0]["time"] = time
    return envelope


@pytest.mark.parametrize(("event", "code"), [("PAUSED", "template_paused"), ("DISABLED", "template_disabled")])
def test_paused_or_disabled_template_pauses_its_running_broadcasts_only(
    client, org, channel, template, event, code, django_capture_on_commit_callbacks
):
    # Given a running and a pending broadcast of the template, a completed one, and one of another template
    running = broadcast_make(channel=channel, template=template, recipients=numbers(2), status="IN_PROGRESS")
    pending = broadcast_make(channel=channel, template=template, recipients=numbers(2), status="PENDING")
    done = broadcast_make(channel=channel, template=template, recipients=numbers(1), status="COMPLETED")
    other_template = Template.objects.create(waba_id=channel.waba_id, name="other", language="es", category="UTILITY")
    other = broadcast_make(channel=channel, template=other_template, recipients=numbers(1), status="IN_PROGRESS")
    WebhookEndpoint.objects.create(organization=org, url="https://hooks.example.com/x", secret="whsec_x")

    # When Meta pauses (disables) the template
    with django_capture_on_commit_callbacks(execute=True):
        post_signed(client, template_update(template, event))

    # Then the running and pending broadcasts are PAUSED with the template's reason; the others are untouched
    for broadcast in (running, pending):
        broadcast.refresh_from_db()
        assert broadcast.status == BroadcastStatus.PAUSED
        assert broadcast.paused_reason["code"] == code
        assert event in broadcast.paused_reason["message"]
    assert Broadcast.objects.get(id=done.id).status == BroadcastStatus.COMPLETED
    assert Broadcast.objects.get(id=other.id).status == BroadcastStatus.IN_PROGRESS
    # And the customer gets broadcast.paused for each
    paused_events = Event.objects.filter(type="broadcast.paused")
    assert sorted(e.data["broadcast_id"] for e in paused_events) == sorted([running.id, pending.id])


def test_flagged_or_a_repeated_approved_pauses_nothing(client, channel, template):
    running = broadcast_make(channel=channel, template=template, recipients=numbers(2), status="IN_PROGRESS")
    post_signed(client, template_update(template, "FLAGGED"))
    post_signed(client, template_update(template, "APPROVED", time=1_790_000_001))
    assert Broadcast.objects.get(id=running.id).status == BroadcastStatus.IN_PROGRESS


def test_an_older_paused_update_pauses_nothing(client, channel, template):
    # Given the template was reinstated at T+10
    post_signed(client, template_update(template, "REINSTATED", time=1_790_000_010))
    running = broadcast_make(channel=channel, template=template, recipients=numbers(2), status="IN_PROGRESS")
    # When an older PAUSED (T) arrives late, then nothing changes
    post_signed(client, template_update(template, "PAUSED", time=1_790_000_000))
    assert Broadcast.objects.get(id=running.id).status == BroadcastStatus.IN_PROGRESS
    assert Template.objects.get(id=template.id).status == "APPROVED"


@pytest.mark.parametrize(("code", "reason"), [("132015", "template_paused"), ("132016", "template_disabled")])
def test_failed_status_with_a_template_error_pauses_the_broadcast(client, org, channel, template, code, reason):
    # Given a running broadcast whose sends Meta accepted
    broadcast = broadcast_with_sends(org=org, channel=channel, template=template, count=3)
    # When Meta reports one failed with 132015 / 132016
    failed = status_entry(
        f"wamid.{broadcast.id}.1", "failed", errors=[{"code": int(code), "title": "Template is Paused"}]
    )
    post_signed(client, meta_envelope(statuses=[failed]))
    # Then the broadcast is PAUSED with that reason, and the send stays FAILED (Meta accepted it: never re-posted)
    broadcast.refresh_from_db()
    assert broadcast.status == BroadcastStatus.PAUSED
    assert broadcast.paused_reason["code"] == reason
    assert Send.objects.get(broadcast=broadcast, index=1).status == SendStatus.FAILED


def test_failed_status_with_another_code_pauses_nothing(client, org, channel, template):
    broadcast = broadcast_with_sends(org=org, channel=channel, template=template, count=2)
    failed = status_entry(f"wamid.{broadcast.id}.0", "failed", errors=[{"code": 131026}])
    post_signed(client, meta_envelope(statuses=[failed]))
    assert Broadcast.objects.get(id=broadcast.id).status == BroadcastStatus.IN_PROGRESS


def test_resume_is_409_while_the_template_is_not_approved(api, client, channel, template):
    # Given a broadcast paused by its template
    broadcast = broadcast_make(channel=channel, template=template, recipients=numbers(2), status="IN_PROGRESS")
    post_signed(client, template_update(template, "PAUSED"))

    # When it is resumed, then 409 with a clear message, and it stays PAUSED
    response = api.post(f"/v1/messages/bulk/{broadcast.id}/resume")
    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "conflict"
    assert "PAUSED, not APPROVED" in error["message"]
    assert Broadcast.objects.get(id=broadcast.id).status == BroadcastStatus.PAUSED

    # When Meta approves the template again, then resume succeeds
    post_signed(client, template_update(template, "APPROVED", time=1_790_000_001))
    response = api.post(f"/v1/messages/bulk/{broadcast.id}/resume")
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "PENDING"  # it never started (no started_at): PENDING again


def test_resume_of_a_manually_paused_broadcast_with_a_paused_template_is_409(api, channel, template):
    broadcast = broadcast_make(channel=channel, template=template, recipients=numbers(1), status="PAUSED")
    Template.objects.filter(id=template.id).update(status="DISABLED")
    response = api.post(f"/v1/messages/bulk/{broadcast.id}/resume")
    assert response.status_code == 409
    assert "DISABLED" in response.json()["error"]["message"]


@pytest.mark.parametrize(("status", "code"), [("PAUSED", "template_paused"), ("DISABLED", "template_disabled")])
def test_a_due_broadcast_with_an_unapproved_template_is_held_paused(channel, template, status, code):
    # Given a scheduled broadcast now due, whose template Meta paused meanwhile
    past = timezone.now() - timedelta(seconds=1)
    broadcast = broadcast_make(channel=channel, template=template, recipients=numbers(2), scheduled_at=past)
    Template.objects.filter(id=template.id).update(status=status)

    # When beat starts the due broadcasts
    started = broadcasts_start_due()

    # Then it is PAUSED with the template's reason, never started
    broadcast.refresh_from_db()
    assert broadcast.status == BroadcastStatus.PAUSED
    assert broadcast.paused_reason["code"] == code
    assert broadcast.started_at is None
    assert started == [broadcast.id]  # handed to dispatch, which finds it PAUSED and leaves it be
    assert lifecycle.broadcasts_start(broadcast_ids=[broadcast.id], now=timezone.now()) == 0


def test_a_due_broadcast_with_an_approved_template_starts(channel, template):
    broadcast = broadcast_make(channel=channel, template=template, recipients=numbers(1))
    assert lifecycle.broadcasts_start(broadcast_ids=[broadcast.id], now=timezone.now()) == 1
    assert Broadcast.objects.get(id=broadcast.id).status == BroadcastStatus.IN_PROGRESS


@pytest.mark.parametrize("code", [132015, 132016])
def test_template_error_codes_are_their_own_class_and_keep_the_send_pending(code):
    assert classify(code=code, http_status=400) is ErrorClass.TEMPLATE
    error = parse_graph_error(400, {"error": {"code": code, "message": "(#132015) Template is paused"}})
    assert error.pauses_broadcast and not error.retryable
    send = Claimed(id=1, index=0, to="+573000000001", variables={}, attempts=1)
    row = outcome_row(send=send, result=SendResult(error=error), now=timezone.now())
    # Pending again (its error shown), as an account-level error's send: tried again after resume
    assert row.status == SendStatus.PENDING and row.error_code == str(code) and row.next_attempt_at is None


def _metadata(value, phone_number_id):
    metadata = {"display_phone_number": "15550000000"}
    if phone_number_id is not None:
        metadata["phone_number_id"] = phone_number_id
    return {**value, "metadata": metadata}


@pytest.mark.parametrize("named", ["other channel", "none of ours", None])
def test_a_template_failure_from_another_channel_or_none_pauses_nothing(
    client, org, other_org, channel, template, named
):
    # Given a running broadcast on `channel`, and another organization's channel
    broadcast = broadcast_with_sends(org=org, channel=channel, template=template, count=2)
    other = channel.__class__.objects.create(
        organization=other_org, phone_number_id="100000000000555", waba_id="2555", access_token="t"
    )
    phone = {"other channel": other.phone_number_id, "none of ours": "999", None: None}[named]
    failed = status_entry(f"wamid.{broadcast.id}.1", "failed", errors=[{"code": 132015, "title": "Template is Paused"}])
    envelope = meta_envelope(statuses=[failed])
    envelope["entry"][0]["changes"][0]["value"] = _metadata(envelope["entry"][0]["changes"][0]["value"], phone)
    # When a signed failed status with 132015 names its wamid from another number (or from no number): 2xx
    post_signed(client, envelope)
    # Then nothing changes: the broadcast runs on, its send is untouched
    assert Broadcast.objects.get(id=broadcast.id).status == BroadcastStatus.IN_PROGRESS
    assert Send.objects.get(broadcast=broadcast, index=1).status == SendStatus.SENT
    # While the same status from the broadcast's own channel pauses it
    envelope["entry"][0]["changes"][0]["value"] = _metadata(
        envelope["entry"][0]["changes"][0]["value"], channel.phone_number_id
    )
    post_signed(client, envelope)
    assert Broadcast.objects.get(id=broadcast.id).status == BroadcastStatus.PAUSED
