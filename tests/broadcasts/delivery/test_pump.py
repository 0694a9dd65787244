"""The whole delivery path for real: PostgreSQL, Redis, a Celery worker process and the sandbox over HTTP."""

import orjson
import pytest

from broadcasts.models import Broadcast, Send
from broadcasts.queue import enqueue_dispatch
from tests.broadcasts.counts_support import assert_counts_exact
from tests.broadcasts.delivery.support import sends_by_number, settle
from tests.delivery_support import broadcast_make, broadcast_settled, numbers, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


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
    sends = sends_by_number(broadcast)
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
            # the send's own reference, echoed by Meta in every status webhook (docs/rules.md)
            "biz_opaque_callback_data": f"{broadcast.id}:{send.index}",
        }
    assert {s.status for s in sends.values()} == {"SENT"}
    assert {(s.meta_status, s.wa_id) for s in sends.values()} == {("accepted", s.to[1:]) for s in sends.values()}
    assert all(s.message_id and s.message_id.startswith("wamid.") for s in sends.values())
    assert {s.attempts for s in sends.values()} == {1}
    assert all(s.lease_expires_at is None and s.posting_at is None for s in sends.values())
    assert Broadcast.objects.get(id=broadcast.id).status == "COMPLETED"
    assert assert_counts_exact(broadcast)[broadcast.id]["sent"] == 30


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
    # and the counts kept through the flushes and the cancel are the sends' own
    assert assert_counts_exact(broadcast)[broadcast.id]["cancelled"] == counts["CANCELLED"]


def test_a_chunk_that_runs_twice_posts_nothing_twice(channel, template, delivery_sandbox, worker, delivery_settings):
    from broadcasts import queue

    # Given a started broadcast whose chunk message is delivered three times (broker redelivery, sweeper)
    broadcast = broadcast_make(channel=channel, template=template, recipients=numbers(25), status="IN_PROGRESS")
    ids = list(Send.objects.filter(broadcast=broadcast).order_by("id").values_list("id", flat=True))

    # When all three run
    for _ in range(3):
        queue.chunk_enqueue(broadcast.id, ids[0], ids[-1])

    # Then each recipient got exactly one POST
    assert settle(broadcast).status == "COMPLETED"
    posts = [r["to"] for r in delivery_sandbox.requests()]
    assert len(posts) == 25 and len(set(posts)) == 25


@pytest.mark.parametrize(
    ("lease", "connect", "read", "posting"),
    [(60.0, 5.0, 15.0, 20.0), (20.0, 2.0, 5.0, 2.0), (8.0, 1.0, 1.5, 1.5)],
)
def test_a_chunk_posts_no_longer_than_its_last_answer_can_come_before_the_soft_time_limit(
    settings, lease, connect, read, posting
):
    from broadcasts.delivery.pump import posting_seconds
    from broadcasts.queue import chunk_time_limits

    settings.DELIVERY_LEASE_SECONDS = lease
    settings.DELIVERY_CONNECT_TIMEOUT_SECONDS = connect
    settings.DELIVERY_READ_TIMEOUT_SECONDS = read
    # A third of the lease, unless the last POST's answer (connect + read timeout) and a second for the final write
    # would then pass the soft time limit (Celery raises it inside whatever the loop runs, a timeout callback too)
    assert posting_seconds() == pytest.approx(posting)
    assert posting_seconds() + connect + read < chunk_time_limits()[0]
