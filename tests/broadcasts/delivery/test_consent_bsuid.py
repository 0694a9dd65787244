"""A username-only "stop" for real (docs/rules.md, "Usernames and BSUIDs"): a Celery worker process, the sandbox over
HTTP, Meta's signed webhooks posted to our live receiver."""

import orjson
import pytest
from django.test import Client

from broadcasts.models import ContactIdentity, Send
from broadcasts.queue import enqueue_dispatch
from tests.broadcasts.delivery.support import META_APP_SECRET, settle
from tests.delivery_support import broadcast_make, numbers, wait_for
from tests.events.helpers import meta_envelope, meta_signature

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

LISTED = "+573009990001"
USER = "CO.5519203388"


def _signed(payload) -> int:
    body = orjson.dumps(payload)
    return (
        Client()
        .post(
            "/v1/webhooks/whatsapp",
            data=body,
            content_type="application/json",
            HTTP_X_HUB_SIGNATURE_256=meta_signature(body, META_APP_SECRET),
        )
        .status_code
    )


def test_a_username_only_stop_mid_broadcast_fails_the_rest_of_that_users_marketing_sends(
    channel, template, meta_webhooks, worker, delivery_settings
):
    # Given a MARKETING broadcast of 300 at 40/s, one number listed 5 times (same-number spacing: 6 s apart)
    channel.max_mps = 40
    channel.save()
    recipients = numbers(295)
    for position in (0, 60, 120, 180, 240):
        recipients.insert(position, LISTED)
    broadcast = broadcast_make(channel=channel, template=template, recipients=recipients)
    enqueue_dispatch(broadcast.id)

    # When Meta ties that number to a BSUID (a status naming recipient_user_id) ...
    wait_for(lambda: Send.objects.filter(broadcast=broadcast, to=LISTED).exclude(message_id=None).exists(), timeout=20)
    first = Send.objects.filter(broadcast=broadcast, to=LISTED).exclude(message_id=None).first()
    status = {
        "id": first.message_id,
        "status": "sent",
        "timestamp": "1790000000",
        "recipient_id": LISTED[1:],
        "recipient_user_id": USER,
    }
    envelope = meta_envelope(statuses=[status], waba_id=channel.waba_id)
    envelope["entry"][0]["changes"][0]["value"]["metadata"]["phone_number_id"] = channel.phone_number_id
    assert _signed(envelope) == 200
    # ... and the user, known to us by username only, stops marketing messages
    stop = meta_envelope(
        field="user_preferences",
        waba_id=channel.waba_id,
        value={
            "metadata": {"phone_number_id": channel.phone_number_id},
            "user_preferences": [
                {"user_id": USER, "category": "marketing_messages", "value": "stop", "timestamp": 1790000001}
            ],
        },
    )
    assert _signed(stop) == 200
    posted_before = len(meta_webhooks.requests(to=LISTED))

    # Then the rest of that number's MARKETING sends end FAILED opted_out, and no further POST reaches it
    settle(broadcast, timeout=60)
    listed = list(Send.objects.filter(broadcast=broadcast, to=LISTED).order_by("index"))
    opted_out = [s for s in listed if s.error_code == "opted_out"]
    assert len(meta_webhooks.requests(to=LISTED)) == posted_before < 5
    assert len(opted_out) == 5 - posted_before >= 3
    # The send keeps the BSUID Meta's answer named (the sandbox's own); the status tied the number to USER besides
    assert Send.objects.get(id=first.id).user_id not in (None, USER)
    assert (USER, LISTED[1:], LISTED) in set(ContactIdentity.objects.values_list("user_id", "wa_id", "number"))
