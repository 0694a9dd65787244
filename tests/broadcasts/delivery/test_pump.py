"""The whole delivery path for real: PostgreSQL, Redis, a Celery worker process and the sandbox over HTTP."""

import orjson
import pytest

from broadcasts.models import Broadcast, Send
from broadcasts.tasks import enqueue_dispatch
from tests.delivery_support import broadcast_make, broadcast_settled, numbers, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def _sends(broadcast):
    return {s.to: s for s in Send.objects.filter(broadcast=broadcast)}


def test_each_recipient_gets_exactly_one_post_with_payload_and_token(
    channel, template, delivery_sandbox, worker, delivery_settings
):
    # Given a broadcast of 30 recipients on a channel
    recipients = numbers(30)
    broadcast = broadcast_make(channel=channel, template=template, recipients=recipients)

    # When it is dispatched
    enqueue_dispatch(broadcast.id)

    # Then it completes with every send SENT with the wamid Meta answered, one POST each
    wait_for(lambda: broadcast_settled(broadcast.id), timeout=20, message="broadcast completed")
    broadcast.refresh_from_db()
    assert broadcast.status == "COMPLETED"
    assert broadcast.started_at and broadcast.completed_at
    requests = delivery_sandbox.requests()
    assert sorted(r["to"] for r in requests) == sorted(n.lstrip("+") for n in recipients)
    sends = _sends(broadcast)
    for request in requests:
        assert request["phone_number_id"] == channel.phone_number_id
        assert request["authorization"] == f"Bearer {channel.access_token}"
        body = request["body"] if isinstance(request["body"], dict) else orjson.loads(request["body"])
        send = sends[body["to"]]
        assert body == {
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": send.to,
            "type": "template",
            "template": {
                "name": "welcome_v2",
                "language": {"code": "es"},
                "components": [
                    {
                        "type": "body",
                        "parameters": [
                            {"type": "text", "parameter_name": "nombre", "text": "Ana"},
                            {"type": "text", "parameter_name": "monto", "text": str(send.index)},
                        ],
                    }
                ],
            },
        }
    assert {s.status for s in sends.values()} == {"SENT"}
    assert all(s.message_id and s.message_id.startswith("wamid.") for s in sends.values())
    assert {s.attempts for s in sends.values()} == {1}
    assert all(s.lease_expires_at is None and s.posting_at is None for s in sends.values())
    assert Broadcast.objects.get(id=broadcast.id).status == "COMPLETED"


def _settle(broadcast, timeout=30):
    try:
        wait_for(lambda: broadcast_settled(broadcast.id), timeout=timeout, message=f"broadcast {broadcast.id} settled")
    except AssertionError as exc:
        rows = list(
            Send.objects.filter(broadcast=broadcast).values(
                "to", "status", "attempts", "next_attempt_at", "lease_expires_at", "error_code"
            )
        )
        status = Broadcast.objects.get(id=broadcast.id).status
        raise AssertionError(f"{exc}: broadcast {status}, sends {rows}") from None
    broadcast.refresh_from_db()
    return broadcast


def test_transient_errors_are_retried_until_sent(channel, template, delivery_sandbox, worker, delivery_settings):
    # Given a recipient whose first two POSTs get HTTP 500, and one whose first times out (read timeout)
    flaky, slow, fine = numbers(3)
    delivery_sandbox.script(flaky, ["http500", "http500", "ok"])
    delivery_sandbox.script(slow, ["hang", "ok"])
    broadcast = broadcast_make(channel=channel, template=template, recipients=[flaky, slow, fine])

    # When it is sent
    enqueue_dispatch(broadcast.id)

    # Then every send ends SENT; the flaky one after 3 attempts, the timed-out one counted as an unknown outcome
    assert _settle(broadcast).status == "COMPLETED"
    sends = _sends(broadcast)
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
        _settle(broadcast)
    except AssertionError:
        print(worker.log()[-6000:])
        raise
    assert broadcast.status == "COMPLETED"
    send = _sends(broadcast)[doomed]
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
    assert _settle(broadcast).status == "FAILED"
    sends = _sends(broadcast)
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
    paused_send = _sends(broadcast)[recipients[2]]
    assert paused_send.status == "PENDING" and paused_send.error_code == "190"
    import time

    time.sleep(1.5)
    assert len(delivery_sandbox.requests()) == posted

    # When it is resumed
    broadcast_resume(broadcast_id=broadcast.id)

    # Then it goes on where it stopped: every send SENT, the paused one tried again
    assert _settle(broadcast).status == "COMPLETED"
    sends = _sends(broadcast)
    assert {s.status for s in sends.values()} == {"SENT"}
    assert sends[recipients[2]].attempts == 2
    assert len(delivery_sandbox.requests()) == 13


def test_cancel_stops_sending_and_cancels_what_is_left(channel, template, delivery_sandbox, worker, delivery_settings):
    import time

    from broadcasts.services import broadcast_cancel

    # Given a broadcast going out at 10/s
    channel.max_mps = 10
    channel.save()
    broadcast = broadcast_make(channel=channel, template=template, recipients=numbers(60))
    enqueue_dispatch(broadcast.id)
    delivery_sandbox.wait_for_requests(5, timeout=10)

    # When it is cancelled
    broadcast_cancel(broadcast_id=broadcast.id)
    cancelled_at = time.time()

    # Then sending stops within 2 s, and every send not sent is CANCELLED, never sent
    wait_for(lambda: not Send.objects.filter(broadcast=broadcast, status="PENDING").exists(), timeout=10)
    last = max(r["received_at"] for r in delivery_sandbox.requests())
    posted = len(delivery_sandbox.requests())
    time.sleep(1.0)
    assert len(delivery_sandbox.requests()) == posted
    assert last - cancelled_at < 2.0
    counts = {
        status: Send.objects.filter(broadcast=broadcast, status=status).count() for status in ("SENT", "CANCELLED")
    }
    assert counts["SENT"] == posted
    assert counts["SENT"] + counts["CANCELLED"] == 60
    assert counts["CANCELLED"] > 20
    broadcast.refresh_from_db()
    assert broadcast.status == "CANCELLED"


def test_a_chunk_that_runs_twice_posts_nothing_twice(channel, template, delivery_sandbox, worker, delivery_settings):
    from broadcasts.tasks import send_chunk_task

    # Given a started broadcast whose chunk message is delivered three times (broker redelivery, sweeper)
    broadcast = broadcast_make(channel=channel, template=template, recipients=numbers(25), status="IN_PROGRESS")
    ids = list(Send.objects.filter(broadcast=broadcast).order_by("id").values_list("id", flat=True))

    # When all three run
    for _ in range(3):
        send_chunk_task.delay(broadcast.id, ids[0], ids[-1])

    # Then each recipient got exactly one POST
    assert _settle(broadcast).status == "COMPLETED"
    posts = [r["to"] for r in delivery_sandbox.requests()]
    assert len(posts) == 25 and len(set(posts)) == 25


def test_claim_takes_each_due_send_once_and_skips_leased_and_future_ones(channel, template, delivery_settings):
    from datetime import timedelta

    from django.utils import timezone

    from broadcasts.delivery import _claim

    # Given a started broadcast: 3 due sends, one retry due later, one held by a live worker
    broadcast = broadcast_make(channel=channel, template=template, recipients=numbers(5), status="IN_PROGRESS")
    sends = list(Send.objects.filter(broadcast=broadcast).order_by("id"))
    now = timezone.now()
    Send.objects.filter(id=sends[3].id).update(next_attempt_at=now + timedelta(seconds=30))
    Send.objects.filter(id=sends[4].id).update(lease_expires_at=now + timedelta(seconds=30), attempts=1)

    # When two workers claim the same range one after the other
    first = _claim(broadcast_id=broadcast.id, first_id=sends[0].id, last_id=sends[-1].id, now=now, limit=10)
    second = _claim(broadcast_id=broadcast.id, first_id=sends[0].id, last_id=sends[-1].id, now=now, limit=10)

    # Then the first gets the 3 due sends (lease + 1 attempt each), the second nothing
    assert [c.id for c in first] == [s.id for s in sends[:3]]
    assert {c.attempts for c in first} == {1}
    assert second == []
    assert Send.objects.filter(broadcast=broadcast, lease_expires_at__isnull=False).count() == 4


def test_broadcast_whose_sends_all_failed_before_sending_ends_failed_once(channel, template, delivery_settings):
    from broadcasts.delivery import broadcast_dispatch, broadcast_finalize

    # Given a broadcast whose every recipient lacked a variable (FAILED at creation, never posted)
    broadcast = broadcast_make(channel=channel, template=template, recipients=numbers(3))
    Send.objects.filter(broadcast=broadcast).update(status="FAILED", error_code="missing_variables")

    # When it is dispatched
    chunks = broadcast_dispatch(broadcast_id=broadcast.id)

    # Then nothing is enqueued and it ends FAILED at once, exactly once
    assert chunks == 0
    broadcast.refresh_from_db()
    assert (broadcast.status, broadcast.started_at is not None, broadcast.completed_at is not None) == (
        "FAILED",
        True,
        True,
    )
    assert broadcast_finalize(broadcast_id=broadcast.id) is None


def test_chunks_running_at_once_in_threads_of_one_process_each_use_their_own_loop(
    channel, template, delivery_sandbox, delivery_settings
):
    # Given two broadcasts on two channels, and a worker whose pool runs tasks in threads (as `make run` does)
    from concurrent.futures import ThreadPoolExecutor

    from django.db import connections

    from broadcasts import delivery
    from broadcasts.delivery import send_chunk_deliver
    from templates_registry.models import Channel

    other = Channel.objects.create(
        organization=channel.organization,
        phone_number_id="100000000000002",
        waba_id=channel.waba_id,
        access_token="EAAG-other-channel-token",
        max_mps=80,
    )
    first = broadcast_make(channel=channel, template=template, recipients=numbers(20))
    second = broadcast_make(channel=other, template=template, recipients=numbers(20, start=20))
    for broadcast in (first, second):
        Broadcast.objects.filter(id=broadcast.id).update(status="IN_PROGRESS")

    def deliver(broadcast):
        try:
            ids = list(Send.objects.filter(broadcast=broadcast).order_by("id").values_list("id", flat=True))
            return send_chunk_deliver(broadcast_id=broadcast.id, first_id=ids[0], last_id=ids[-1])
        finally:
            runtime = delivery._get_runtime()
            runtime.db.submit(connections.close_all).result()
            runtime.db.shutdown()
            connections.close_all()

    # When both chunks run at the same time in two threads
    with ThreadPoolExecutor(max_workers=2) as pool:
        reports = list(pool.map(deliver, [first, second]))

    # Then both posted all their sends (one loop each: no "event loop is already running")
    assert [sum(r.sent for r in chunk_reports) for chunk_reports in reports] == [20, 20]
    assert len(delivery_sandbox.requests()) == 40
    assert set(Broadcast.objects.filter(id__in=[first.id, second.id]).values_list("status", flat=True)) == {"COMPLETED"}
