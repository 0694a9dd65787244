"""Status webhooks posted back (sandbox.webhooks): signed, batched, retried, and moving our sends forward."""

import hashlib
import hmac
import time

import orjson
import pytest

from broadcasts.models import Broadcast, BroadcastStatus, Send, SendStatus
from tests.sandbox.support import PHONE, SECRET, TO, WebhookReceiver, message, send


def test_signed_delivered_and_read_webhooks_batched(sandbox, receiver):
    # given webhooks to our receiver, delivered after 100 ms and read after 300 ms
    sandbox.config(webhook_url=receiver.url, app_secret=SECRET, delivered_after_ms=100, read_after_ms=300)

    # when three sends are accepted together
    wamids = [send(sandbox, message(to=f"+57300111223{i}")).json()["messages"][0]["id"] for i in range(3)]

    # then each gets delivered then read, in Meta's envelope
    statuses = receiver.wait_for(6)
    assert sorted((s["id"], s["status"]) for s in statuses) == sorted(
        [(w, "delivered") for w in wamids] + [(w, "read") for w in wamids]
    )
    delivered = next(s for s in statuses if s["status"] == "delivered")
    assert delivered["recipient_id"].startswith("57300111223")
    assert delivered["timestamp"].isdecimal()
    assert "pricing" in delivered and "conversation" in delivered
    # and every body is signed with the app secret over its raw bytes
    for headers, body in receiver.posts:
        expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        assert hmac.compare_digest(headers["x-hub-signature-256"], expected)
        envelope = orjson.loads(body)
        assert envelope["object"] == "whatsapp_business_account"
        change = envelope["entry"][0]["changes"][0]
        assert change["field"] == "messages"
        assert change["value"]["metadata"]["phone_number_id"] == PHONE
    # and statuses due together travel in one body, as Meta batches them
    assert len(receiver.posts) < 6
    assert max(len(orjson.loads(body)["entry"][0]["changes"][0]["value"]["statuses"]) for _, body in receiver.posts) > 1


def test_failed_webhook_outcome_accepts_then_reports_failure(sandbox, receiver):
    sandbox.config(webhook_url=receiver.url, app_secret=SECRET, delivered_after_ms=50)
    sandbox.script(TO, ["failed_webhook:131026"])

    response = send(sandbox)

    assert response.status_code == 200
    [status] = receiver.wait_for(1)
    time.sleep(0.3)  # nothing else (no delivered/read) follows a failure
    assert receiver.statuses() == [status]
    assert status["id"] == response.json()["messages"][0]["id"]
    assert status["status"] == "failed"
    assert status["errors"][0]["code"] == 131026
    assert status["errors"][0]["title"]


def test_webhook_is_retried_after_a_non_2xx(sandbox):
    # given a receiver that fails its first post
    receiver = WebhookReceiver(fail_first=1)
    try:
        sandbox.config(webhook_url=receiver.url, app_secret=SECRET, delivered_after_ms=0, read_after_ms=0)

        # when one send is accepted
        send(sandbox)

        # then its statuses still arrive, after a retry
        statuses = receiver.wait_for(2)
        assert sorted(s["status"] for s in statuses) == ["delivered", "read"]
        assert sandbox.stats()["webhooks"]["retries"] == 1
    finally:
        receiver.close()


def test_no_webhooks_without_url(sandbox, receiver):
    sandbox.config(delivered_after_ms=0, read_after_ms=0)

    send(sandbox)
    time.sleep(0.4)

    assert receiver.posts == []
    assert sandbox.stats()["webhooks"]["pending_statuses"] == 0


@pytest.mark.django_db(transaction=True)
def test_sandbox_webhooks_move_our_sends_to_read_and_failed(
    django_db_setup, sandbox, live_server, settings, channel, template
):
    # given our webhook receiver with the app secret the sandbox signs with
    settings.WHATSAPP_APP_SECRET = SECRET
    sandbox.config(
        webhook_url=f"{live_server.url}/v1/webhooks/whatsapp",
        app_secret=SECRET,
        delivered_after_ms=50,
        read_after_ms=150,
    )
    sandbox.script("+573001112299", ["failed_webhook:131026"])
    broadcast = Broadcast.objects.create(
        organization=channel.organization,
        channel=channel,
        template=template,
        template_name=template.name,
        language=template.language,
        campaign_name="sandbox e2e",
        total_recipients=2,
        status=BroadcastStatus.IN_PROGRESS,
        sent=2,  # the kept counts of the two SENT sends written below
    )
    # when two sends are accepted by the sandbox and recorded SENT with their wamids
    sends = []
    for index, to in enumerate(["+573001112233", "+573001112299"]):
        wamid = send(sandbox, message(to=to), phone=channel.phone_number_id).json()["messages"][0]["id"]
        sends.append(
            Send.objects.create(broadcast=broadcast, index=index, to=to, status=SendStatus.SENT, message_id=wamid)
        )

    # then the sandbox's signed webhooks move them to READ and FAILED
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        statuses = [s.status for s in Send.objects.filter(broadcast=broadcast).order_by("index")]
        if statuses == [SendStatus.READ, SendStatus.FAILED]:
            break
        time.sleep(0.1)
    assert statuses == [SendStatus.READ, SendStatus.FAILED]
    failed = Send.objects.get(pk=sends[1].pk)
    assert failed.error_code == "131026"
    assert sandbox.stats()["webhooks"]["failed_posts"] == 0


def test_statuses_echo_the_callback_data_and_a_sent_status_comes_first_when_asked(sandbox, receiver):
    # given webhooks with a `sent` status right after each accepted send
    sandbox.config(webhook_url=receiver.url, app_secret=SECRET, sent_after_ms=0, delivered_after_ms=100)

    # when a send carrying biz_opaque_callback_data is accepted
    body = {**message(), "biz_opaque_callback_data": "b123:7"}
    wamid = send(sandbox, body).json()["messages"][0]["id"]

    # then sent, delivered and read arrive, sent first, each echoing the callback data
    statuses = receiver.wait_for(3)
    assert [s["status"] for s in sorted(statuses, key=lambda s: ("sent", "delivered", "read").index(s["status"]))] == [
        "sent",
        "delivered",
        "read",
    ]
    assert statuses[0]["status"] == "sent"
    assert {(s["id"], s["biz_opaque_callback_data"]) for s in statuses} == {(wamid, "b123:7")}


def test_no_sent_status_and_no_callback_key_by_default(sandbox, receiver):
    sandbox.config(webhook_url=receiver.url, app_secret=SECRET, delivered_after_ms=0, read_after_ms=0)
    send(sandbox)
    statuses = receiver.wait_for(2)
    assert sorted(s["status"] for s in statuses) == ["delivered", "read"]
    assert all("biz_opaque_callback_data" not in s for s in statuses)
