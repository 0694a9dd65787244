"""Template health and the marketing route for real: a Celery worker posting to the sandbox over HTTP, and the
sandbox posting Meta's signed template webhooks to our receiver (pytest's live server) on demand."""

import time
from datetime import timedelta

import pytest
from django.utils import timezone

from broadcasts.models import Broadcast, BroadcastStatus, Send, SendStatus
from broadcasts.queue import enqueue_dispatch
from templates_registry.models import Template
from tests.broadcasts.delivery.support import settle
from tests.delivery_support import broadcast_make, numbers, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]
APP_SECRET = "template-health-secret"


@pytest.fixture
def meta_webhooks(delivery_sandbox, live_server, settings):
    """The sandbox's webhooks, signed, to our receiver (status webhooks of sends held back: not under test)."""
    settings.WHATSAPP_APP_SECRET = APP_SECRET
    delivery_sandbox.config(
        webhook_url=f"{live_server.url}/v1/webhooks/whatsapp",
        app_secret=APP_SECRET,
        delivered_after_ms=600_000,
        read_after_ms=600_000,
    )
    return delivery_sandbox


def status_webhook(sandbox, template, event, at):
    answer = sandbox.template_status_webhook(
        event=event, name=template.name, language=template.language, waba_id=template.waba_id, time=at
    )
    assert answer["status"] == 200, answer
    return answer["answered_at"]


def broadcast_status(broadcast) -> str:
    return Broadcast.objects.values_list("status", flat=True).get(id=broadcast.id)


def test_paused_template_pauses_a_running_broadcast_and_resume_waits_for_approved(
    api, channel, template, meta_webhooks, worker, delivery_settings
):
    sandbox = meta_webhooks
    # Given a broadcast of 60 going out at 10/s
    channel.max_mps = 10
    channel.save()
    recipients = numbers(60)
    broadcast = broadcast_make(channel=channel, template=template, recipients=recipients)
    enqueue_dispatch(broadcast.id)
    sandbox.wait_for_requests(5, timeout=15)

    # When Meta pauses the template (a signed webhook to the running app)
    t0 = int(time.time())
    answered_at = status_webhook(sandbox, template, "PAUSED", t0)

    # Then the broadcast is PAUSED within 5 s of the webhook's answer (already when it answered: it waits for the
    # posting fence before its 2xx), with the template's reason
    wait_for(lambda: broadcast_status(broadcast) == BroadcastStatus.PAUSED, timeout=5, message="paused")
    assert time.time() - answered_at < 5
    broadcast.refresh_from_db()
    assert broadcast.paused_reason["code"] == "template_paused"
    # And no POST of it arrives after the pause is visible
    seen = len(sandbox.requests())
    time.sleep(1.5)
    after = sandbox.requests()
    assert len(after) == seen < len(recipients)
    assert all(r["received_at"] <= answered_at + 0.2 for r in after)

    # When it is resumed while the template is PAUSED, then 409
    response = api.post(f"/v1/messages/bulk/{broadcast.id}/resume")
    assert response.status_code == 409
    assert "not APPROVED" in response.json()["error"]["message"]

    # When an update older than the pause arrives (APPROVED at t0 - 60), then nothing changes
    status_webhook(sandbox, template, "APPROVED", t0 - 60)
    assert Template.objects.get(id=template.id).status == "PAUSED"
    assert api.post(f"/v1/messages/bulk/{broadcast.id}/resume").status_code == 409

    # When Meta approves it again (newer), then resume is accepted and the broadcast completes
    status_webhook(sandbox, template, "APPROVED", t0 + 1)
    assert Template.objects.get(id=template.id).status == "APPROVED"
    response = api.post(f"/v1/messages/bulk/{broadcast.id}/resume")
    assert response.status_code == 200, response.content
    broadcast = settle(broadcast, timeout=40)
    assert broadcast.status == BroadcastStatus.COMPLETED
    # And every recipient got exactly one POST
    assert sorted(r["to"] for r in sandbox.requests()) == sorted(n.lstrip("+") for n in recipients)


def test_template_error_132015_at_send_time_pauses_and_resume_retries_the_send(
    api, channel, template, delivery_sandbox, worker, delivery_settings
):
    sandbox = delivery_sandbox
    # Given a broadcast of 40 going out at 20/s
    channel.max_mps = 20
    channel.save()
    recipients = numbers(40, start=100)
    broadcast = broadcast_make(channel=channel, template=template, recipients=recipients)
    enqueue_dispatch(broadcast.id)
    sandbox.wait_for_requests(5, timeout=15)

    # When Meta starts answering its sends with 132015 (template paused)
    sandbox.template_error(template.name, 132015)

    # Then the broadcast pauses with template_paused and Meta's words, and stops posting
    wait_for(lambda: broadcast_status(broadcast) == BroadcastStatus.PAUSED, timeout=5, message="paused on 132015")
    broadcast.refresh_from_db()
    assert broadcast.paused_reason["code"] == "template_paused"
    assert "132015" in broadcast.paused_reason["message"]
    time.sleep(0.5)
    seen = len(sandbox.requests())
    time.sleep(1.0)
    assert len(sandbox.requests()) == seen
    # And the refused send is pending again, its error shown (as an account-level error's send)
    refused = Send.objects.filter(broadcast=broadcast, error_code="132015")
    assert refused.exists()
    assert set(refused.values_list("status", flat=True)) == {SendStatus.PENDING}

    # When Meta takes the template again and the broadcast is resumed, then every send goes out
    sandbox.template_error(template.name, None)
    assert api.post(f"/v1/messages/bulk/{broadcast.id}/resume").status_code == 200
    broadcast = settle(broadcast, timeout=30)
    assert broadcast.status == BroadcastStatus.COMPLETED
    assert set(Send.objects.filter(broadcast=broadcast).values_list("status", flat=True)) == {SendStatus.SENT}
    accepted = [r["to"] for r in sandbox.requests() if r["outcome"] == "ok"]
    assert sorted(accepted) == sorted(n.lstrip("+") for n in recipients)


def test_a_due_broadcast_whose_template_is_paused_becomes_paused_without_posting(
    channel, template, meta_webhooks, worker, delivery_settings
):
    sandbox = meta_webhooks
    # Given a broadcast scheduled a moment ahead, and Meta pausing its template meanwhile
    broadcast = broadcast_make(
        channel=channel,
        template=template,
        recipients=numbers(5, start=200),
        scheduled_at=timezone.now() + timedelta(seconds=1),
    )
    status_webhook(sandbox, template, "PAUSED", int(time.time()))
    # (a PENDING broadcast of a paused template is paused by the webhook itself; put it back to see the start)
    Broadcast.objects.filter(id=broadcast.id).update(status=BroadcastStatus.PENDING, paused_reason=None)

    # When it falls due and the worker dispatches it
    time.sleep(1.2)
    enqueue_dispatch(broadcast.id)

    # Then it is PAUSED with template_paused, never started, and nothing was posted
    wait_for(lambda: broadcast_status(broadcast) == BroadcastStatus.PAUSED, timeout=10, message="held paused")
    broadcast.refresh_from_db()
    assert broadcast.paused_reason["code"] == "template_paused"
    assert broadcast.started_at is None
    time.sleep(0.5)
    assert sandbox.requests() == []


def test_webhook_pauses_a_scheduled_pending_broadcast_too(channel, template, meta_webhooks, worker, delivery_settings):
    broadcast = broadcast_make(
        channel=channel,
        template=template,
        recipients=numbers(2, start=300),
        scheduled_at=timezone.now() + timedelta(hours=1),
    )
    status_webhook(meta_webhooks, template, "DISABLED", int(time.time()))
    broadcast.refresh_from_db()
    assert broadcast.status == BroadcastStatus.PAUSED
    assert broadcast.paused_reason["code"] == "template_disabled"


def test_marketing_sends_use_marketing_messages_and_utility_ones_messages(
    channel, template, delivery_sandbox, worker, delivery_settings
):
    # Given a channel onboarded to the Marketing Messages API, a MARKETING and a UTILITY template
    channel.marketing_messages = True
    channel.save()
    utility = Template.objects.create(
        waba_id=channel.waba_id,
        name="receipt_v1",
        language="es",
        status="APPROVED",
        category="UTILITY",
        components=template.components,
        body_variables=template.body_variables,
    )
    marketing_numbers, utility_numbers = numbers(6, start=400), numbers(6, start=500)
    marketing = broadcast_make(channel=channel, template=template, recipients=marketing_numbers)
    receipts = broadcast_make(channel=channel, template=utility, recipients=utility_numbers)

    # When both go out
    enqueue_dispatch(marketing.id)
    enqueue_dispatch(receipts.id)
    assert settle(marketing).status == BroadcastStatus.COMPLETED
    assert settle(receipts).status == BroadcastStatus.COMPLETED

    # Then the MARKETING sends hit /marketing_messages and the UTILITY ones /messages, same body shape
    paths = {r["to"]: (r["path"], r["body"]["template"]["name"]) for r in delivery_sandbox.requests()}
    assert {paths[n.lstrip("+")] for n in marketing_numbers} == {("marketing_messages", "welcome_v2")}
    assert {paths[n.lstrip("+")] for n in utility_numbers} == {("messages", "receipt_v1")}


def test_marketing_sends_on_a_channel_not_onboarded_use_messages(
    channel, template, delivery_sandbox, worker, delivery_settings
):
    broadcast = broadcast_make(channel=channel, template=template, recipients=numbers(3, start=600))
    enqueue_dispatch(broadcast.id)
    assert settle(broadcast).status == BroadcastStatus.COMPLETED
    assert {r["path"] for r in delivery_sandbox.requests()} == {"messages"}


def test_category_and_quality_webhooks_are_stored(template, meta_webhooks):
    sandbox = meta_webhooks
    ref = {"message_template_id": 1, "message_template_name": template.name, "message_template_language": "es"}

    # An advance notice of a category change changes nothing
    advance = {**ref, "correct_category": "UTILITY", "new_category": "MARKETING", "category_update_timestamp": 1}
    assert sandbox.template_webhook("template_category_update", advance, waba_id=template.waba_id)["status"] == 200
    assert Template.objects.get(id=template.id).category == "MARKETING"
    # The final notice does
    final = {**ref, "previous_category": "MARKETING", "new_category": "UTILITY"}
    sandbox.template_webhook("template_category_update", final, waba_id=template.waba_id)
    assert Template.objects.get(id=template.id).category == "UTILITY"
    # And the quality score is stored
    quality = {**ref, "previous_quality_score": "GREEN", "new_quality_score": "YELLOW"}
    sandbox.template_webhook("message_template_quality_update", quality, waba_id=template.waba_id)
    assert Template.objects.get(id=template.id).quality == "YELLOW"
