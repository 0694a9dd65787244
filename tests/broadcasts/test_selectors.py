"""Reads: counts from one GROUP BY, error rate, keyset pages."""

from datetime import timedelta
from unittest import mock

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from broadcasts import selectors, services
from broadcasts.counts import counts_from_sends, counts_rebuild
from broadcasts.models import Broadcast, Send, SendStatus
from broadcasts.status_updates.apply import sends_apply_statuses
from core.errors import NotFoundError
from tests.broadcasts.counts_support import assert_counts_exact, sends_update
from tests.broadcasts.test_api_create import payload
from tests.events.helpers import parsed, status_entry


@pytest.fixture
def make_broadcast(org, channel, template):
    def make(n: int = 3) -> Broadcast:
        with mock.patch("broadcasts.services.enqueue_dispatch"):
            result = services.broadcast_create(organization=org, body=payload(channel, n=n))
        return Broadcast.objects.get(pk=result.body["broadcast_id"])

    return make


def test_counts_of_several_broadcasts_in_one_query_without_reading_sends(make_broadcast):
    # given broadcasts whose sends moved (through the status updates, which keep the counts)
    first, second, other = make_broadcast(4), make_broadcast(2), make_broadcast(1)
    Send.objects.filter(broadcast=first, index=0).update(status=SendStatus.SENT, message_id="wamid.c0")
    counts_rebuild(broadcast_ids=[first.id])
    sends_apply_statuses(statuses=parsed([status_entry("wamid.c0", "read")]))

    # when their counts are read, they come from the broadcast rows: one query, no send read
    with CaptureQueriesContext(connection) as queries:
        counts = selectors.broadcast_counts(broadcast_ids=[first.id, second.id, other.id])
    assert len(queries) == 1 and "broadcasts_send" not in queries[0]["sql"]
    assert counts[first.id] == {"pending": 3, "sent": 0, "delivered": 0, "read": 1, "failed": 0, "cancelled": 0}
    assert counts[second.id]["pending"] == 2
    # and they are what a GROUP BY over the sends says
    assert counts == counts_from_sends(broadcast_ids=[first.id, second.id, other.id])
    assert_counts_exact(first, second, other)


def test_counts_from_sends_counts_every_status_and_zeros(make_broadcast):
    broadcast, empty = make_broadcast(3), make_broadcast(1)
    Send.objects.filter(broadcast=empty).delete()
    Send.objects.filter(broadcast=broadcast, index=0).update(status=SendStatus.CANCELLED)
    with CaptureQueriesContext(connection) as queries:
        counts = counts_from_sends(broadcast_ids=[broadcast.id, empty.id])
    assert len(queries) == 1 and "GROUP BY" in queries[0]["sql"]
    assert counts[broadcast.id] == {"pending": 2, "sent": 0, "delivered": 0, "read": 0, "failed": 0, "cancelled": 1}
    assert counts[empty.id] == dict.fromkeys(selectors.COUNT_KEYS, 0)


@pytest.mark.parametrize(
    "counts,total,expected",
    [
        ({"pending": 0, "failed": 1, "cancelled": 0}, 3, 0.3333),
        ({"pending": 2, "failed": 1, "cancelled": 1}, 4, 1.0),
        ({"pending": 5, "failed": 0, "cancelled": 0}, 5, 0.0),
        ({"pending": 0, "failed": 0, "cancelled": 5}, 5, 0.0),
        ({"pending": 0, "failed": 2, "cancelled": 0}, 3, 0.6667),
    ],
)
def test_error_rate(counts, total, expected):
    assert selectors.error_rate(counts=counts, total=total) == expected


def test_get_is_scoped_to_the_organization(make_broadcast, other_org):
    broadcast = make_broadcast()
    assert selectors.broadcast_get(broadcast_id=broadcast.id, organization=broadcast.organization) == broadcast
    with pytest.raises(NotFoundError):
        selectors.broadcast_get(broadcast_id=broadcast.id, organization=other_org)


def test_list_breaks_created_at_ties_by_id(make_broadcast, org):
    broadcasts = [make_broadcast(1) for _ in range(3)]
    same = timezone.now() - timedelta(minutes=1)
    Broadcast.objects.update(created_at=same)
    expected = sorted((b.id for b in broadcasts), reverse=True)
    first, more = selectors.broadcast_list(organization=org, limit=2)
    assert more and [b.id for b in first] == expected[:2]
    rest, more = selectors.broadcast_list(organization=org, limit=2, after=(same, first[-1].id))
    assert not more and [b.id for b in rest] == expected[2:]


def test_sends_list_filters_and_continues_after_an_index(make_broadcast):
    broadcast = make_broadcast(6)
    sends_update(Send.objects.filter(broadcast=broadcast, index__in=[1, 3, 5]), status=SendStatus.FAILED)
    rows, more = selectors.broadcast_sends_list(broadcast=broadcast, limit=2, status="FAILED")
    assert [r["index"] for r in rows] == [1, 3] and more
    rows, more = selectors.broadcast_sends_list(broadcast=broadcast, limit=2, status="FAILED", after_index=3)
    assert [r["index"] for r in rows] == [5] and not more


def test_error_codes_most_frequent_first(make_broadcast):
    broadcast = make_broadcast(6)
    sends_update(
        Send.objects.filter(broadcast=broadcast, index__lt=3), status="FAILED", error_code="131026", error_message="A"
    )
    sends_update(
        Send.objects.filter(broadcast=broadcast, index=3), status="FAILED", error_code="131049", error_message="B"
    )
    assert selectors.broadcast_error_codes(broadcast=broadcast) == [("131026", "A", 3), ("131049", "B", 1)]
