"""Meta's per-user marketing limit (131049): the holds kept in PostgreSQL (broadcasts/rules/marketing_holds.py), the
answer to the POST that starts one (delivery/outcomes.py) and the gate that makes a MARKETING send wait."""

from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from broadcasts.delivery.claims import Claimed
from broadcasts.delivery.gates.chain import GATES
from broadcasts.delivery.gates.marketing_hold import marketing_hold_gate
from broadcasts.delivery.outcomes import outcome_row, sends_record
from broadcasts.models import MarketingHold, Send
from broadcasts.rules.marketing_holds import holds_start, holds_waiting
from core.redis import redis_client
from tests.broadcasts.counts_support import assert_counts_exact
from tests.broadcasts.gate_support import gate_ctx
from tests.delivery_support import broadcast_make
from whatsapp.client import SendResult
from whatsapp.errors import parse_graph_error

HOLD = 3600.0


@pytest.fixture(autouse=True)
def _hold(settings):
    settings.MARKETING_LIMIT_HOLD_SECONDS = HOLD


_ctx = gate_ctx


def _claimed(numbers: list[str]) -> list[Claimed]:
    return [Claimed(id=i + 1, index=i, to=n, variables={}, attempts=1) for i, n in enumerate(numbers)]


def _hold_on(org, to: str, *, seconds: float) -> None:
    now = timezone.now()
    MarketingHold.objects.create(organization=org, to=to, failed_at=now, until=now + timedelta(seconds=seconds))


def test_the_gate_is_registered_in_the_chain():
    assert marketing_hold_gate in GATES


def test_a_held_number_waits_until_its_hold_ends_and_the_others_go(org, db):
    _hold_on(org, "+573000000001", seconds=120)
    _hold_on(org, "+573000000002", seconds=-5)  # over
    sends = _claimed(["+573000000001", "+573000000002", "+573000000003"])

    verdict = marketing_hold_gate(_ctx(org.id), sends)

    assert [s.to for s in verdict.ready] == ["+573000000002", "+573000000003"]
    [(send, wait, reason)] = verdict.deferred
    assert send.to == "+573000000001" and reason == "marketing_hold"
    assert 115 < wait <= 120
    assert verdict.failed == [] and verdict.pause is None


def test_a_hold_is_the_organizations_own(org, other_org, db):
    _hold_on(other_org, "+573000000001", seconds=120)
    verdict = marketing_hold_gate(_ctx(org.id), _claimed(["+573000000001"]))
    assert len(verdict.ready) == 1 and verdict.deferred == []


@pytest.mark.parametrize("category", ["UTILITY", "AUTHENTICATION"])
def test_other_categories_pass_without_a_query(org, db, category):
    _hold_on(org, "+573000000001", seconds=120)
    with CaptureQueriesContext(connection) as queries:
        verdict = marketing_hold_gate(_ctx(org.id, category), _claimed(["+573000000001"]))
    assert len(verdict.ready) == 1 and len(queries) == 0


def test_one_indexed_query_per_batch_whatever_its_size(org, db):
    for i in range(50):
        _hold_on(org, f"+5730000{i:05d}", seconds=60)
    numbers = [f"+5730000{i:05d}" for i in range(500)]
    with CaptureQueriesContext(connection) as queries:
        verdict = marketing_hold_gate(_ctx(org.id), _claimed(numbers))
    assert len(queries) == 1
    assert len(verdict.deferred) == 50 and len(verdict.ready) == 450
    # the lookup is a probe of the unique (organization, to) index, not a scan of the holds
    with connection.cursor() as cursor:
        cursor.execute("SET enable_seqscan = off")
        cursor.execute("EXPLAIN " + queries[0]["sql"])
        plan = "\n".join(row[0] for row in cursor.fetchall())
        cursor.execute("SET enable_seqscan = on")
    assert "marketing_hold_unique_number" in plan


def test_holds_survive_a_redis_flush(org, db):
    _hold_on(org, "+573000000001", seconds=120)
    redis_client().flushall()
    assert set(holds_waiting(organization_id=org.id, numbers=["+573000000001"])) == {"+573000000001"}


def test_holds_start_upserts_per_number_and_only_moves_later(org, channel, template, db):
    broadcast = broadcast_make(channel=channel, template=template, recipients=["+573000000001"] * 2 + ["+573000000002"])
    ids = list(Send.objects.filter(broadcast=broadcast).order_by("index").values_list("id", flat=True))
    t0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    # Two failures of one number in one batch: one row, from the later one
    assert holds_start(failures=[(ids[0], t0), (ids[1], t0 + timedelta(seconds=30)), (ids[2], t0)]) == 2
    holds = {h.to: h for h in MarketingHold.objects.all()}
    assert holds["+573000000001"].until == t0 + timedelta(seconds=30 + HOLD)
    assert holds["+573000000002"].until == t0 + timedelta(seconds=HOLD)
    # An older failure (a late webhook) leaves it be; a newer one extends it
    holds_start(failures=[(ids[0], t0 - timedelta(hours=5))])
    assert MarketingHold.objects.get(to="+573000000001").until == t0 + timedelta(seconds=30 + HOLD)
    holds_start(failures=[(ids[2], t0 + timedelta(seconds=100))])
    assert MarketingHold.objects.get(to="+573000000002").until == t0 + timedelta(seconds=100 + HOLD)
    assert MarketingHold.objects.count() == 2
    assert holds_start(failures=[]) == 0


def _answer(code: int, status: int = 400) -> SendResult:
    return SendResult(error=parse_graph_error(status, {"error": {"code": code, "message": f"Error {code}"}}))


def test_a_131049_answer_fails_the_send_retryable_and_holds_its_number(org, channel, template, db):
    # Given three claimed sends
    broadcast = broadcast_make(
        channel=channel, template=template, recipients=["+573000000001", "+573000000002", "+573000000003"]
    )
    sends = list(Send.objects.filter(broadcast=broadcast).order_by("index"))
    Send.objects.filter(broadcast=broadcast).update(attempts=1)
    claimed = [Claimed(id=s.id, index=s.index, to=s.to, variables={}, attempts=1) for s in sends]
    now = timezone.now()

    # When Meta answers 131049 for one, 131026 for another, and accepts the third
    rows = [
        outcome_row(send=claimed[0], result=_answer(131049), now=now),
        outcome_row(send=claimed[1], result=_answer(131026), now=now),
        outcome_row(send=claimed[2], result=SendResult(message_id="wamid.x"), now=now),
    ]
    sends_record(rows=rows)

    # Then the 131049 send is FAILED retryable, and only its number is held from the answer's time
    stored = {s.to: s for s in Send.objects.filter(broadcast=broadcast)}
    assert (stored["+573000000001"].status, stored["+573000000001"].error_retryable) == ("FAILED", True)
    assert (stored["+573000000002"].status, stored["+573000000002"].error_retryable) == ("FAILED", False)
    [hold] = MarketingHold.objects.all()
    assert (hold.organization_id, hold.to, hold.failed_at) == (org.id, "+573000000001", now)
    assert hold.until == now + timedelta(seconds=HOLD)
    assert_counts_exact(broadcast)


def test_recording_outcomes_without_a_131049_writes_no_hold(org, channel, template, db):
    broadcast = broadcast_make(channel=channel, template=template, recipients=["+573000000001"])
    send = Send.objects.get(broadcast=broadcast)
    claimed = Claimed(id=send.id, index=0, to=send.to, variables={}, attempts=1)
    with CaptureQueriesContext(connection) as queries:
        sends_record(rows=[outcome_row(send=claimed, result=_answer(131026), now=timezone.now())])
    assert not any("marketinghold" in q["sql"] for q in queries)
    assert not MarketingHold.objects.exists()
