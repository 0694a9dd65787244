"""Meta's per-user marketing limit (131049) for real: a Celery worker, the sandbox over HTTP and Meta's signed
webhooks. A number that failed with it is not posted again within MARKETING_LIMIT_HOLD_SECONDS (4 s in tests:
FAST_DELIVERY_SETTINGS) of the failure, neither by ``retry`` nor by a new broadcast, and is posted after it."""

from datetime import UTC, datetime

import pytest

from broadcasts import services
from broadcasts.models import MarketingHold, Send
from broadcasts.queue import enqueue_dispatch
from broadcasts.status_updates.unmatched import unmatched_statuses_retry
from tests.broadcasts.counts_support import assert_counts_exact
from tests.broadcasts.delivery.support import settle
from tests.delivery_support import broadcast_make, numbers, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

HOLD = 4.0
APP_SECRET = "hold-app-secret"


def posts_to(sandbox, number: str) -> list[float]:
    return sorted(r["received_at"] for r in sandbox.requests(to=number))


def test_a_131049_answer_holds_the_number_from_retry_and_new_broadcasts(
    channel, template, delivery_sandbox, worker, delivery_settings
):
    assert delivery_settings.MARKETING_LIMIT_HOLD_SECONDS == HOLD
    held, *others = numbers(3)
    # Given Meta answers 131049 (its per-user marketing limit) to one number of a MARKETING broadcast
    delivery_sandbox.script(held, ["error:131049"])
    first = broadcast_make(channel=channel, template=template, recipients=[held, *others])
    enqueue_dispatch(first.id)
    assert settle(first).status == "COMPLETED"
    failed = Send.objects.get(broadcast=first, to=held)
    assert (failed.status, failed.error_code, failed.error_retryable) == ("FAILED", "131049", True)
    hold = MarketingHold.objects.get(to=held)
    assert hold.failed_at == failed.failed_at
    until = hold.until.timestamp()
    assert abs(until - failed.failed_at.timestamp() - HOLD) < 0.001

    # When the failure is retried at once, and a new broadcast names the number (and another) meanwhile
    broadcast, retried = services.broadcast_retry(broadcast_id=first.id, body={"error_codes": ["131049"]})
    assert retried == 1 and broadcast.status == "IN_PROGRESS"
    second = broadcast_make(channel=channel, template=template, recipients=[held, numbers(1, start=50)[0]])
    enqueue_dispatch(second.id)

    # Then nothing reaches that number within the hold (the other number of the new broadcast goes at once) ...
    delivery_sandbox.wait_for_requests(1, timeout=10, to=numbers(1, start=50)[0])
    assert len(posts_to(delivery_sandbox, held)) == 1
    retried_send = Send.objects.get(id=failed.id)
    assert retried_send.status == "PENDING" and retried_send.attempts == 0  # waiting, not failed, not counted

    # ... and both sends go out once it is over (spaced by the 6 s same-number rule), each posted once
    assert settle(first, timeout=40).status == "COMPLETED"
    assert settle(second, timeout=40).status == "COMPLETED"
    posts = posts_to(delivery_sandbox, held)
    assert len(posts) == 3
    assert all(at >= until for at in posts[1:]), (posts, until)
    assert {s.status for s in Send.objects.filter(to=held, broadcast__in=[first, second])} == {"SENT"}
    assert Send.objects.get(id=failed.id).error_code == ""
    assert_counts_exact(first, second)


def test_a_utility_template_is_not_held(channel, template, delivery_sandbox, worker, delivery_settings):
    # Given a number held for marketing
    held = numbers(1, start=70)[0]
    delivery_sandbox.script(held, ["error:131049"])
    first = broadcast_make(channel=channel, template=template, recipients=[held])
    enqueue_dispatch(first.id)
    assert settle(first).status == "FAILED"
    assert MarketingHold.objects.filter(to=held).exists()
    # When a UTILITY template is sent to it
    template.category = "UTILITY"
    template.save()
    utility = broadcast_make(channel=channel, template=template, recipients=[held])
    enqueue_dispatch(utility.id)
    # Then it goes at once (6 s same-number spacing aside): the hold is on marketing messages only
    assert settle(utility, timeout=20).status == "COMPLETED"


def test_a_131049_webhook_gets_the_posts_retryable_and_holds_from_its_timestamp(
    channel, template, delivery_sandbox, worker, delivery_settings, live_server
):
    # Given Meta's webhooks (the sandbox's) pointed at our receiver, signed
    delivery_settings.WHATSAPP_APP_SECRET = APP_SECRET
    delivery_sandbox.config(
        webhook_url=f"{live_server.url}/v1/webhooks/whatsapp", app_secret=APP_SECRET, delivered_after_ms=50
    )
    try:
        held, other = numbers(2, start=80)
        # and Meta accepts the send, then reports it failed with 131049 in a status webhook
        delivery_sandbox.script(held, ["failed_webhook:131049"])
        first = broadcast_make(channel=channel, template=template, recipients=[held, other])
        enqueue_dispatch(first.id)

        def failed_by_webhook():
            unmatched_statuses_retry()  # beat's job: a status that beat its wamid to the database
            return Send.objects.filter(broadcast=first, to=held, status="FAILED").first()

        failed = wait_for(failed_by_webhook, timeout=20, message="failed status applied")
        # Then the send's error is what an answer to the POST with 131049 gives it
        assert (failed.error_code, failed.error_retryable) == ("131049", True)
        assert failed.message_id and failed.message_id.startswith("wamid.")
        # and the hold starts at the status's own timestamp (Meta's Unix seconds)
        hold = MarketingHold.objects.get(to=held)
        assert hold.failed_at == failed.failed_at
        assert hold.failed_at == datetime.fromtimestamp(int(hold.failed_at.timestamp()), tz=UTC)
        until = hold.until.timestamp()
        assert until - hold.failed_at.timestamp() == HOLD
        assert settle(first).status == "COMPLETED"

        # When it is retried and a new broadcast names it within the hold
        assert services.broadcast_retry(broadcast_id=first.id)[1] == 1
        second = broadcast_make(channel=channel, template=template, recipients=[held])
        enqueue_dispatch(second.id)

        # Then neither reaches the number before the hold ends; both do after it
        assert settle(first, timeout=40).status == "COMPLETED"
        assert settle(second, timeout=40).status == "COMPLETED"
        posts = posts_to(delivery_sandbox, held)
        assert len(posts) == 3 and all(at >= until for at in posts[1:]), (posts, until)
        assert_counts_exact(first, second)
    finally:
        delivery_sandbox.config(webhook_url=None, app_secret=None, delivered_after_ms=1000.0)
