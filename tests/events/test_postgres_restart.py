"""PostgreSQL restarted between an event's POST and the write that marks it delivered (events/outbox.py): the
write waits for the database instead of leaving the delivery to be posted again when its lease ends."""

import threading
import time
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from broadcasts.notifications import message_events_publish
from events import outbox
from events.models import DeliveryAttempt, DeliveryStatus, EventDelivery
from tests.delivery_support import postgres_start, postgres_stop
from tests.events.helpers import broadcast_with_sends

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_postgres_restarted_after_the_posts_the_batch_is_still_marked_delivered_once(
    org, channel, template, receiver, endpoint_for, enqueued
):
    # Given three events for an endpoint that, on the first POST, stops PostgreSQL before answering 200, and a
    # supervisor that starts it again 2 s later
    endpoint, _ = endpoint_for(org, receiver.url)
    broadcast = broadcast_with_sends(org=org, channel=channel, template=template, count=3)
    message_events_publish(send_ids=list(broadcast.sends.values_list("id", flat=True)), status="SENT")
    stopped = threading.Event()
    restarter = threading.Thread(target=lambda: (stopped.wait(30), time.sleep(2.0), postgres_start()))
    restarter.start()

    def stop_once() -> None:
        if not stopped.is_set():
            postgres_stop()
            stopped.set()

    receiver.before_answer = stop_once

    # When the outbox delivers them (its write of the outcomes meets a stopped database)
    try:
        stats = outbox.endpoint_deliver_due(endpoint_id=endpoint.id)
    finally:
        stopped.set()
        restarter.join()
        connection.close()

    # Then it waited for PostgreSQL and marked all three delivered, each posted once with one attempt logged
    assert stats["delivered"] == 3
    assert len(receiver.requests) == 3
    deliveries = list(EventDelivery.objects.all())
    assert {(d.status, d.attempts) for d in deliveries} == {(DeliveryStatus.DELIVERED, 1)}
    assert DeliveryAttempt.objects.count() == 3
    # and nothing is posted again, even once the lease would have ended
    later = timezone.now() + outbox.CLAIM_LEASE + timedelta(seconds=1)
    assert outbox.endpoint_deliver_due(endpoint_id=endpoint.id, now=later)["delivered"] == 0
    assert len(receiver.requests) == 3
