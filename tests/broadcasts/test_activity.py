"""broadcasts/activity.py: a broadcast's sends over time (one aggregate over its own sends only), its funnel from
the kept counts, its failures by code."""

import json
from datetime import UTC, datetime

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from broadcasts import activity
from broadcasts.models import SendStatus
from tests.broadcasts.activity_support import MIX_COUNTS, MIX_PER_MINUTE, Group, broadcast_with_sends

pytestmark = pytest.mark.django_db


def minute_table(timeline: activity.Timeline) -> dict[str, dict[str, int]]:
    return {at.strftime("%H:%M"): values for at, values in timeline.rows()}


def test_per_minute_counts_of_each_status_time(channel, template):
    broadcast = broadcast_with_sends(channel, template)
    assert {key: getattr(broadcast, key) for key in MIX_COUNTS} == MIX_COUNTS
    with CaptureQueriesContext(connection) as queries:
        timeline = activity.broadcast_timeline(broadcast_id=broadcast.id)
    assert len(queries) == 1
    assert timeline.unit == "minute"
    assert minute_table(timeline) == MIX_PER_MINUTE
    assert timeline.buckets[0] == datetime(2026, 12, 1, 10, 0, tzinfo=UTC) and len(timeline.buckets) == 5
    # against the kept counts: read = read; delivered = delivered + read; failed = failed; sent = every send that
    # reached SENT, the 3 failed by webhook after it included
    totals = timeline.totals()
    assert totals["read"] == broadcast.read
    assert totals["delivered"] == broadcast.delivered + broadcast.read
    assert totals["failed"] == broadcast.failed
    assert totals["sent"] == broadcast.sent + broadcast.delivered + broadcast.read + 3


def test_a_short_broadcast_is_counted_per_second_with_the_gaps_filled(channel, template):
    broadcast = broadcast_with_sends(
        channel,
        template,
        [Group(3, SendStatus.SENT, sent=1), Group(2, SendStatus.DELIVERED, sent=1, delivered=4)],
    )
    timeline = activity.broadcast_timeline(broadcast_id=broadcast.id)
    assert timeline.unit == "second"
    assert [at.second for at in timeline.buckets] == [1, 2, 3, 4]
    assert timeline.counts == {"sent": [5, 0, 0, 0], "delivered": [0, 0, 0, 2], "read": [0] * 4, "failed": [0] * 4}


def test_long_spans_take_coarser_buckets(channel, template):
    hours = broadcast_with_sends(
        channel, template, [Group(1, SendStatus.SENT, sent=0), Group(1, "SENT", sent=7 * 3600)]
    )
    assert activity.broadcast_timeline(broadcast_id=hours.id).unit == "hour"
    assert len(activity.broadcast_timeline(broadcast_id=hours.id).buckets) == 8
    days = broadcast_with_sends(channel, template, [Group(1, "SENT", sent=0), Group(1, "FAILED", failed=9 * 86400)])
    timeline = activity.broadcast_timeline(broadcast_id=days.id)
    assert timeline.unit == "day" and len(timeline.buckets) == 10 and timeline.counts["failed"][-1] == 1


def test_nothing_happened_yet(channel, template):
    broadcast = broadcast_with_sends(channel, template, [Group(4, SendStatus.PENDING)])
    timeline = activity.broadcast_timeline(broadcast_id=broadcast.id)
    assert timeline.unit is None and timeline.buckets == [] and timeline.rows() == []


def _nodes(plan: dict):
    yield plan
    for child in plan.get("Plans", []):
        yield from _nodes(child)


def test_the_timeline_reads_only_its_own_broadcasts_sends(channel, template):
    """Other broadcasts' 3,000 sends around it: the plan reaches the broadcast's sends through an index on
    broadcast_id, and its scans return no other row."""
    for name in ("a", "b", "c"):
        broadcast_with_sends(channel, template, [Group(1000, SendStatus.DELIVERED, sent=10, delivered=20)], name=name)
    broadcast = broadcast_with_sends(channel, template)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE broadcasts_send")
        cursor.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + activity._TIMELINE_SQL, {"broadcast_id": broadcast.id})
        (plan,) = cursor.fetchone()[0]
    plan = plan if isinstance(plan, dict) else json.loads(plan)
    nodes = list(_nodes(plan["Plan"]))
    on_sends = [node for node in nodes if node.get("Relation Name") == "broadcasts_send"]
    assert on_sends, nodes
    assert all(node["Node Type"] != "Seq Scan" for node in on_sends), on_sends
    index_conditions = [node.get("Index Cond", "") for node in nodes if "Index Cond" in node]
    assert any("broadcast_id" in condition for condition in index_conditions), index_conditions
    for node in on_sends:
        assert node["Actual Rows"] <= 20 and not node.get("Rows Removed by Filter"), node


def test_funnel_from_the_kept_counts():
    steps = activity.funnel(counts=MIX_COUNTS, total=20)
    assert [(s.name, s.count, s.rate) for s in steps] == [
        ("attempted", 18, None),
        ("sent", 12, round(12 / 18, 4)),
        ("delivered", 7, round(7 / 12, 4)),
        ("read", 4, round(4 / 7, 4)),
    ]
    nothing = activity.funnel(counts=dict.fromkeys(MIX_COUNTS, 0), total=0)
    assert [s.rate for s in nothing] == [None, None, None, None]


def test_failures_by_code_with_how_many_a_retry_would_requeue(channel, template):
    broadcast = broadcast_with_sends(channel, template)
    with CaptureQueriesContext(connection) as queries:
        failures = activity.broadcast_failures(broadcast_id=broadcast.id)
    assert len(queries) == 1
    assert [(f.code, f.failed, f.retryable, f.message) for f in failures] == [
        ("131049", 3, 3, "Meta chose not to deliver."),
        ("131026", 2, 0, "Message undeliverable."),
        ("130429", 1, 1, "Rate limit hit"),
    ]
