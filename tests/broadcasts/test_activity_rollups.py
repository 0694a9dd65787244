"""The overview's kept rollups (broadcasts/rollups.py): POSTs per channel and second by the minute, failures per
channel and code by the hour, written by the outcome write, the status webhook, the sweeper and ingest in ONE
statement per batch (none for a batch that posted and failed nothing)."""

from datetime import UTC, datetime, timedelta
from unittest import mock

import orjson
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from broadcasts.delivery.outcomes import OutcomeRow, sends_record
from broadcasts.models import ChannelMinute, FailureHour, SendStatus
from broadcasts.rollups import activity_add
from broadcasts.status_updates.apply import sends_apply_statuses
from tests.broadcasts.counts_support import assert_counts_exact
from tests.events.helpers import broadcast_with_sends, parsed, status_entry

T = datetime(2026, 12, 7, 10, 15, 0, tzinfo=UTC)


def rollup_statements(queries) -> list[str]:
    return [q["sql"] for q in queries if "channelminute" in q["sql"] or "failurehour" in q["sql"]]


def minute_row(channel, minute: datetime) -> list[int]:
    return ChannelMinute.objects.get(channel=channel, minute=minute).per_second


def failures(channel) -> dict[str, int]:
    return dict(FailureHour.objects.filter(channel=channel).values_list("code", "failed"))


@pytest.mark.django_db
def test_batches_add_up_per_second_and_per_code(channel, org, template):
    broadcast = broadcast_with_sends(org=org, channel=channel, template=template, count=1)
    # Given two batches of one minute, overlapping in second 3, the second one naming its channel by a broadcast
    activity_add(now=T, posted=[T + timedelta(seconds=s) for s in (3, 3, 4)], channel_id=channel.id)
    activity_add(
        now=T,
        posted=[T + timedelta(seconds=3), T + timedelta(seconds=61)],
        broadcast_id=broadcast.id,
        failures=[(broadcast.id, "131026"), (broadcast.id, "131026"), (broadcast.id, "131049")],
    )
    activity_add(now=T + timedelta(minutes=5), failures=[(broadcast.id, "131026")])
    # Then each second holds what both posted, in its own minute, and failures are summed per code and hour
    first = minute_row(channel, T)
    assert (first[3], first[4], sum(first)) == (3, 1, 4)
    assert sum(minute_row(channel, T + timedelta(minutes=1))) == 1
    assert minute_row(channel, T + timedelta(minutes=1))[1] == 1
    assert failures(channel) == {"131026": 3, "131049": 1}
    assert FailureHour.objects.get(code="131026").hour == T.replace(minute=0)


@pytest.mark.django_db
def test_an_empty_batch_costs_no_statement(channel):
    with CaptureQueriesContext(connection) as queries:
        activity_add(now=T, posted=[], failures=[])
    assert len(queries) == 0


@pytest.mark.django_db
def test_the_outcome_write_counts_posts_and_failures_in_one_statement(channel, org, template):
    broadcast = broadcast_with_sends(org=org, channel=channel, template=template, count=5, status=SendStatus.PENDING)
    ids = list(broadcast.sends.order_by("index").values_list("id", flat=True))
    at = timezone.now().replace(microsecond=0)
    rows = [
        OutcomeRow(id=ids[0], status=SendStatus.SENT, message_id="wamid.a", sent_at=at),
        OutcomeRow(id=ids[1], status=SendStatus.SENT, message_id="wamid.b", sent_at=at),
        OutcomeRow(id=ids[2], status=SendStatus.FAILED, error_code="131026", failed_at=at),  # posted, failed
        # failed without a POST (its claim's attempt given back): a failure, not a POST
        OutcomeRow(id=ids[3], status=SendStatus.FAILED, attempts_delta=-1, error_code="opted_out", failed_at=at),
        # handed back unposted (a gate's wait): neither
        OutcomeRow(id=ids[4], status=SendStatus.PENDING, attempts_delta=-1, posted=False, wait_reason="throughput"),
    ]
    with CaptureQueriesContext(connection) as queries:
        sends_record(rows=rows, channel_id=channel.id)
    assert len(rollup_statements(queries)) == 1
    per_second = minute_row(channel, at.replace(second=0))
    assert sum(per_second) == 3 and per_second[at.second] == 3
    assert failures(channel) == {"131026": 1, "opted_out": 1}
    # Written again (a journal replay): nothing moves, nothing is counted twice
    sends_record(rows=rows, channel_id=channel.id)
    assert sum(minute_row(channel, at.replace(second=0))) == 3
    assert_counts_exact(broadcast)


@pytest.mark.django_db
def test_a_failed_status_webhook_counts_its_code_and_a_delivered_one_costs_nothing(channel, org, template):
    broadcast = broadcast_with_sends(org=org, channel=channel, template=template, count=3)
    delivered = parsed([status_entry(f"wamid.{broadcast.id}.0", "delivered")])
    with CaptureQueriesContext(connection) as queries:
        sends_apply_statuses(statuses=delivered)
    assert rollup_statements(queries) == []
    errors = [{"code": 131026, "title": "Undeliverable", "message": "Undeliverable"}]
    body = [status_entry(f"wamid.{broadcast.id}.{i}", "failed", errors=errors) for i in (1, 2)]
    with CaptureQueriesContext(connection) as queries:
        sends_apply_statuses(statuses=parsed(body))
        sends_apply_statuses(statuses=parsed(body))  # Meta's redelivery: no send moves, nothing counted
    assert len(rollup_statements(queries)) == 1
    assert failures(channel) == {"131026": 2}
    assert ChannelMinute.objects.count() == 0  # a webhook is no POST
    assert_counts_exact(broadcast)


@pytest.mark.django_db
def test_ingest_counts_missing_variables(api, channel, template):
    body = {
        "template_name": template.name,
        "language": template.language,
        "channel_id": channel.id,
        "recipients": [
            {"to": "+34612345678", "variables": {"nombre": "Ana", "monto": "1"}},
            {"to": "+34612345679", "variables": {}},
        ],
    }
    with mock.patch("broadcasts.services.enqueue_dispatch"):
        response = api.post("/v1/messages/bulk", data=orjson.dumps(body), content_type="application/json")
    assert response.status_code == 202, response.content
    assert failures(channel) == {"missing_variables": 1}
