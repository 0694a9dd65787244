"""Claims: each due send is taken by one worker once, under a lease."""

import pytest

from broadcasts.models import Send
from tests.delivery_support import broadcast_make, numbers

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_claim_takes_each_due_send_once_and_skips_leased_and_future_ones(channel, template, delivery_settings):
    from datetime import timedelta

    from django.utils import timezone

    from broadcasts.delivery.claims import sends_claim

    # Given a started broadcast: 3 due sends, one retry due later, one held by a live worker
    broadcast = broadcast_make(channel=channel, template=template, recipients=numbers(5), status="IN_PROGRESS")
    sends = list(Send.objects.filter(broadcast=broadcast).order_by("id"))
    now = timezone.now()
    Send.objects.filter(id=sends[3].id).update(next_attempt_at=now + timedelta(seconds=30))
    Send.objects.filter(id=sends[4].id).update(lease_expires_at=now + timedelta(seconds=30), attempts=1)

    # When two workers claim the same range one after the other
    first = sends_claim(broadcast_id=broadcast.id, first_id=sends[0].id, last_id=sends[-1].id, now=now, limit=10)
    second = sends_claim(broadcast_id=broadcast.id, first_id=sends[0].id, last_id=sends[-1].id, now=now, limit=10)

    # Then the first gets the 3 due sends (lease + 1 attempt each), the second nothing
    assert [c.id for c in first] == [s.id for s in sends[:3]]
    assert {c.attempts for c in first} == {1}
    assert second == []
    assert Send.objects.filter(broadcast=broadcast, lease_expires_at__isnull=False).count() == 4
    # and each lease runs on the database's clock: its now() plus the lease, whatever this machine's clock says
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT now()")
        db_now = cursor.fetchone()[0]
    leases = Send.objects.filter(id__in=[c.id for c in first]).values_list("lease_expires_at", flat=True)
    assert all(abs((lease - db_now).total_seconds() - delivery_settings.DELIVERY_LEASE_SECONDS) < 1 for lease in leases)
