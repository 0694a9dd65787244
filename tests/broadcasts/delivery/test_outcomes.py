"""What Meta answers becomes each send's outcome (retry, fail, pause), for real: worker, sandbox, PostgreSQL."""

import pytest

from broadcasts.models import Send
from broadcasts.queue import enqueue_dispatch
from tests.broadcasts.delivery.support import sends_by_number, settle
from tests.delivery_support import broadcast_make, broadcast_settled, numbers, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_transient_errors_are_retried_until_sent(channel, template, delivery_sandbox, worker, delivery_settings):
    # Given a recipient whose first two POSTs get HTTP 500, and one whose first times out (read timeout)
    flaky, slow, fine = numbers(3)
    delivery_sandbox.script(flaky, ["http500", "http500", "ok"])
    delivery_sandbox.script(slow, ["hang", "ok"])
    broadcast = broadcast_make(channel=channel, template=template, recipients=[flaky, slow, fine])

    # When it is sent
    enqueue_dispatch(broadcast.id)

    # Then every send ends SENT; the flaky one after 3 attempts, the timed-out one counted as an unknown outcome
    assert settle(broadcast).status == "COMPLETED"
    sends = sends_by_number(broadcast)
    assert (sends[flaky].status, sends[flaky].attempts, sends[flaky].unknown_outcomes) == ("SENT", 3, 0)
    assert (sends[slow].status, sends[slow].attempts, sends[slow].unknown_outcomes) == ("SENT", 2, 1)
    assert (sends[fine].status, sends[fine].attempts) == ("SENT", 1)
    assert len(delivery_sandbox.requests(to=flaky.lstrip("+"))) == 3
    assert len(delivery_sandbox.requests(to=slow.lstrip("+"))) == 2


def test_six_transient_failures_fail_the_send_with_the_last_error(
    channel, template, delivery_sandbox, worker, delivery_settings
):
    # Given a recipient for which Meta always answers a transient error (131000), and a healthy one
    doomed, fine = numbers(2)
    delivery_sandbox.script(doomed, ["error:131000"] * 5 + ["error:131016"] * 3)
    broadcast = broadcast_make(channel=channel, template=template, recipients=[doomed, fine])

    # When it is sent
    enqueue_dispatch(broadcast.id)

    # Then the doomed send FAILED after exactly 6 POSTs with the last error; the broadcast still COMPLETED
    try:
        settle(broadcast)
    except AssertionError:
        print(worker.log()[-6000:])
        raise
    assert broadcast.status == "COMPLETED"
    send = sends_by_number(broadcast)[doomed]
    assert (send.status, send.attempts, send.error_code, send.error_retryable) == ("FAILED", 6, "131016", True)
    assert send.failed_at is not None
    assert len(delivery_sandbox.requests(to=doomed.lstrip("+"))) == 6


def test_permanent_error_fails_at_once_with_one_post(channel, template, delivery_sandbox, worker, delivery_settings):
    # Given recipients Meta refuses for good
    undeliverable, optout = numbers(2)
    delivery_sandbox.script(undeliverable, ["error:131026"])
    delivery_sandbox.script(optout, ["error:131050"])
    broadcast = broadcast_make(channel=channel, template=template, recipients=[undeliverable, optout])

    # When it is sent
    enqueue_dispatch(broadcast.id)

    # Then each is FAILED after one POST with Meta's code and message; no send accepted -> broadcast FAILED
    assert settle(broadcast).status == "FAILED"
    sends = sends_by_number(broadcast)
    assert (sends[undeliverable].status, sends[undeliverable].attempts) == ("FAILED", 1)
    assert sends[undeliverable].error_code == "131026"
    assert sends[undeliverable].error_message
    assert sends[undeliverable].error_retryable is False
    assert sends[optout].error_code == "131050"
    assert len(delivery_sandbox.requests()) == 2


def test_account_level_error_pauses_the_broadcast_until_resumed(
    channel, template, delivery_sandbox, worker, delivery_settings
):
    from broadcasts.services import broadcast_resume

    # Given a slow channel (5/s) whose token expires on the 3rd send
    channel.max_mps = 5
    channel.save()
    recipients = numbers(12)
    delivery_sandbox.script(recipients[2], ["error:190", "ok"])
    broadcast = broadcast_make(channel=channel, template=template, recipients=recipients)

    # When it is sent
    enqueue_dispatch(broadcast.id)

    # Then the broadcast is PAUSED with Meta's error as reason, and no further send is tried
    wait_for(lambda: broadcast_settled(broadcast.id, statuses=("PAUSED",)), timeout=15, message="paused")
    broadcast.refresh_from_db()
    assert broadcast.paused_reason["code"] == "190"
    wait_for(lambda: not Send.objects.filter(broadcast=broadcast, lease_expires_at__isnull=False).exists(), timeout=10)
    posted = len(delivery_sandbox.requests())
    assert posted <= 5  # the 3rd one paused it; at most two already scheduled within the next 0.5 s
    paused_send = sends_by_number(broadcast)[recipients[2]]
    assert paused_send.status == "PENDING" and paused_send.error_code == "190"
    import time

    time.sleep(1.5)
    assert len(delivery_sandbox.requests()) == posted

    # When it is resumed
    broadcast_resume(broadcast_id=broadcast.id)

    # Then it goes on where it stopped: every send SENT, the paused one tried again
    assert settle(broadcast).status == "COMPLETED"
    sends = sends_by_number(broadcast)
    assert {s.status for s in sends.values()} == {"SENT"}
    assert sends[recipients[2]].attempts == 2
    assert len(delivery_sandbox.requests()) == 13
