"""Fan-out: dispatch starts a broadcast, enqueues its chunk tasks, and finishes one with nothing to send."""

import pytest

from broadcasts.counts import counts_rebuild
from broadcasts.models import Send
from tests.delivery_support import broadcast_make, numbers

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_broadcast_whose_sends_all_failed_before_sending_ends_failed_once(channel, template, delivery_settings):
    from broadcasts.delivery.dispatch import broadcast_dispatch
    from broadcasts.lifecycle import broadcast_finalize

    # Given a broadcast whose every recipient lacked a variable (FAILED at creation, never posted)
    broadcast = broadcast_make(channel=channel, template=template, recipients=numbers(3))
    Send.objects.filter(broadcast=broadcast).update(status="FAILED", error_code="missing_variables")
    counts_rebuild(broadcast_ids=[broadcast.id])

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
