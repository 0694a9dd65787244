"""Unknown outcomes wait out DELIVERY_UNKNOWN_GRACE_SECONDS (docs/rules.md); Meta's answer is never forgotten."""

from datetime import timedelta

import pytest
from django.utils import timezone

from broadcasts.delivery.claims import Claimed, sends_claim
from broadcasts.delivery.outcomes import outcome_row, sends_record
from broadcasts.delivery.recovery import sends_recover_expired
from broadcasts.models import Send, SendStatus
from broadcasts.status_updates.apply import sends_apply_statuses
from tests.broadcasts.counts_support import assert_counts_exact
from tests.delivery_support import broadcast_make, numbers
from whatsapp.client import SendResult
from whatsapp.errors import transport_error
from whatsapp.inbound.statuses import status_update_parse
from whatsapp.payload import callback_reference

pytestmark = pytest.mark.django_db(transaction=True)


def claimed(send: Send, attempts: int) -> Claimed:
    return Claimed(id=send.id, index=send.index, to=send.to, variables={}, attempts=attempts)


def test_a_timeout_waits_the_grace_before_its_next_attempt_and_a_known_error_only_its_backoff(
    channel, template, settings
):
    settings.DELIVERY_UNKNOWN_GRACE_SECONDS = 60.0
    settings.DELIVERY_RETRY_BASE_SECONDS = 2.0
    broadcast = broadcast_make(channel=channel, template=template, recipients=numbers(1), status="IN_PROGRESS")
    send = Send.objects.get(broadcast=broadcast)
    now = timezone.now()
    timeout = SendResult(error=transport_error(code="timeout", message="no answer"), unknown=True)
    refused = SendResult(error=transport_error(code="connection_error", message="refused"))

    row = outcome_row(send=claimed(send, 1), result=timeout, now=now)
    assert row.status == SendStatus.PENDING and row.unknown_inc == 1
    assert row.next_attempt_at >= now + timedelta(seconds=60)
    # (a connection that never opened: nothing reached Meta, so its backoff alone)
    row = outcome_row(send=claimed(send, 1), result=refused, now=now)
    assert row.unknown_inc == 0 and row.next_attempt_at < now + timedelta(seconds=5)
    # and after the 6th attempt: FAILED timeout, retryable
    row = outcome_row(send=claimed(send, 6), result=timeout, now=now)
    assert (row.status, row.error_code, row.error_retryable, row.unknown_inc) == (SendStatus.FAILED, "timeout", True, 1)


def test_the_sweeper_holds_a_send_whose_post_may_have_left_for_the_grace(channel, template, settings):
    # Given a killed worker's sends: one whose POST may have left, one never posted
    settings.DELIVERY_UNKNOWN_GRACE_SECONDS = 30.0
    broadcast = broadcast_make(channel=channel, template=template, recipients=numbers(2), status="IN_PROGRESS")
    posting, unposted = Send.objects.filter(broadcast=broadcast).order_by("index")
    past = timezone.now() - timedelta(seconds=1)
    Send.objects.filter(id=posting.id).update(attempts=1, lease_expires_at=past, posting_at=past)
    Send.objects.filter(id=unposted.id).update(attempts=1, lease_expires_at=past)

    # When the sweeper takes them back
    before = timezone.now()
    sends_recover_expired()

    # Then the one that may have reached Meta is not due before the grace; the other is due at once
    posting.refresh_from_db(), unposted.refresh_from_db()
    assert posting.unknown_outcomes == 1 and posting.next_attempt_at >= before + timedelta(seconds=30)
    assert unposted.next_attempt_at is None and unposted.attempts == 0
    claimed_now = sends_claim(
        broadcast_id=broadcast.id, first_id=posting.id, last_id=unposted.id, now=timezone.now(), limit=10
    )
    assert [c.id for c in claimed_now] == [unposted.id]

    # And once a status with its callback data arrives, it is SENT and never claimed again, even past the grace
    sends_apply_statuses(
        statuses=[
            status_update_parse(
                {
                    "id": "wamid.LATE",
                    "status": "sent",
                    "timestamp": "1790000000",
                    "recipient_id": posting.to.lstrip("+"),
                    "biz_opaque_callback_data": callback_reference(broadcast.id, posting.index),
                },
                phone_number_id=channel.phone_number_id,
            )
        ]
    )
    posting.refresh_from_db()
    assert (posting.status, posting.message_id, posting.wa_id) == (SendStatus.SENT, "wamid.LATE", posting.to[1:])
    later = timezone.now() + timedelta(seconds=120)
    assert sends_claim(broadcast_id=broadcast.id, first_id=posting.id, last_id=posting.id, now=later, limit=10) == []


def test_an_answer_written_after_its_webhook_settled_the_send_keeps_metas_fields_and_moves_nothing_twice(
    channel, template
):
    # Given a send whose `sent` status (callback data) beat the worker's outcome write
    broadcast = broadcast_make(channel=channel, template=template, recipients=numbers(1), status="IN_PROGRESS")
    send = Send.objects.get(broadcast=broadcast)
    Send.objects.filter(id=send.id).update(attempts=1, posting_at=timezone.now())
    sends_apply_statuses(
        statuses=[
            status_update_parse(
                {
                    "id": "wamid.1",
                    "status": "sent",
                    "timestamp": "1790000000",
                    "biz_opaque_callback_data": callback_reference(broadcast.id, 0),
                },
                phone_number_id=channel.phone_number_id,
            )
        ]
    )
    # When the worker writes Meta's answer (same wamid)
    answer = SendResult(message_id="wamid.1", wa_id="573000000000", meta_status="held_for_quality_assessment")
    written = sends_record(rows=[outcome_row(send=claimed(send, 1), result=answer, now=timezone.now())])

    # Then the answer's fields are kept, and the send was counted SENT once
    assert written == {}
    send.refresh_from_db()
    assert (send.status, send.wa_id, send.meta_status) == (
        SendStatus.SENT,
        "573000000000",
        "held_for_quality_assessment",
    )
    assert assert_counts_exact(broadcast)[broadcast.id]["sent"] == 1
