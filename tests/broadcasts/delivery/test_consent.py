"""Consent for real (docs/rules.md): a Celery worker process, the sandbox over HTTP, and Meta's signed webhooks (the
sandbox's) posted to our live receiver."""

import pytest

from broadcasts.models import Send, Suppression
from broadcasts.queue import enqueue_dispatch
from broadcasts.status_updates.unmatched import unmatched_statuses_retry
from tests.broadcasts.counts_support import assert_counts_exact
from tests.broadcasts.delivery.support import settle, utility_template
from tests.delivery_support import broadcast_make, numbers, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

LISTED = "+573009990001"


def test_a_stop_mid_broadcast_fails_the_rest_of_that_numbers_marketing_sends_without_a_post(
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

    # When the user stops marketing messages right after the first message to that number went out
    meta_webhooks.wait_for_requests(1, timeout=15, to=LISTED)
    assert meta_webhooks.user_preferences(LISTED, "stop", phone_number_id=channel.phone_number_id) == 200
    entry = Suppression.objects.get(organization=channel.organization, to=LISTED)
    assert entry.source == "user_preferences"
    posted_before = len(meta_webhooks.requests(to=LISTED))

    # Then the rest of that number's sends end FAILED opted_out, and no further POST reaches it
    settle(broadcast, timeout=60)
    listed = list(Send.objects.filter(broadcast=broadcast, to=LISTED).order_by("index"))
    opted_out = [s for s in listed if s.error_code == "opted_out"]
    assert len(meta_webhooks.requests(to=LISTED)) == posted_before < 5
    assert len(opted_out) == 5 - posted_before >= 3
    for send in opted_out:
        assert send.status == "FAILED" and send.error_retryable is False and send.attempts == 0
        assert "suppression list" in send.error_message
    others = Send.objects.filter(broadcast=broadcast).exclude(to=LISTED)
    assert set(others.values_list("status", flat=True)) <= {"SENT", "DELIVERED", "READ"}
    assert assert_counts_exact(broadcast)[broadcast.id]["failed"] == len(opted_out)

    # And a UTILITY broadcast to that number still goes
    utility = broadcast_make(channel=channel, template=utility_template(template), recipients=[LISTED])
    since = meta_webhooks.requests()[-1]["seq"]
    enqueue_dispatch(utility.id)
    settle(utility, timeout=30)
    assert Send.objects.get(broadcast=utility).status in ("SENT", "DELIVERED", "READ")
    assert len(meta_webhooks.requests(to=LISTED, since=since)) == 1


def test_a_resume_lifts_a_stop_but_not_an_entry_the_customer_made(channel, meta_webhooks):
    org = channel.organization
    assert meta_webhooks.user_preferences(LISTED, "stop", phone_number_id=channel.phone_number_id) == 200
    assert Suppression.objects.filter(organization=org, to=LISTED).exists()
    assert meta_webhooks.user_preferences(LISTED, "resume", phone_number_id=channel.phone_number_id) == 200
    assert not Suppression.objects.filter(organization=org, to=LISTED).exists()

    Suppression.objects.create(organization=org, to=LISTED, to_hash=_hash(LISTED), source="api")
    assert meta_webhooks.user_preferences(LISTED, "resume", phone_number_id=channel.phone_number_id) == 200
    assert Suppression.objects.filter(organization=org, to=LISTED, source="api").exists()


def _hash(to: str) -> str:
    from broadcasts.rules.suppressions import number_hash

    return number_hash(to)


def test_131050_in_the_posts_answer_suppresses_the_number(
    channel, template, delivery_sandbox, worker, delivery_settings
):
    # Given the user stopped marketing messages on WhatsApp's side: Meta answers 131050
    delivery_sandbox.script(LISTED, ["error:131050"])
    first = broadcast_make(channel=channel, template=template, recipients=[LISTED, "+573001230001"])

    # When a MARKETING broadcast goes to it
    enqueue_dispatch(first.id)
    settle(first)

    # Then that send fails with 131050 and the number is on the list (source 131050)
    assert Send.objects.get(broadcast=first, to=LISTED).error_code == "131050"
    entry = Suppression.objects.get(organization=channel.organization, to=LISTED)
    assert entry.source == "131050"

    # And the next MARKETING broadcast to it fails opted_out without a POST
    second = broadcast_make(channel=channel, template=template, recipients=[LISTED])
    enqueue_dispatch(second.id)
    settle(second)
    assert Send.objects.get(broadcast=second).error_code == "opted_out"
    assert len(delivery_sandbox.requests(to=LISTED)) == 1


def test_131050_in_a_failed_status_webhook_suppresses_the_number(
    channel, template, meta_webhooks, worker, delivery_settings
):
    # Given Meta accepts the send, then reports it failed with 131050 by webhook
    meta_webhooks.script(LISTED, ["failed_webhook:131050"])
    broadcast = broadcast_make(channel=channel, template=template, recipients=[LISTED])

    # When it goes out
    enqueue_dispatch(broadcast.id)

    # Then the webhook fails the send and puts the number on the list
    def suppressed():
        unmatched_statuses_retry()  # the beat's job: a status that beat its wamid to the database
        return Suppression.objects.filter(organization=channel.organization, to=LISTED, source="131050").exists()

    wait_for(
        suppressed,
        timeout=20,
        message="suppressed by the failed status",
    )
    send = Send.objects.get(broadcast=broadcast)
    assert send.status == "FAILED" and send.error_code == "131050"
