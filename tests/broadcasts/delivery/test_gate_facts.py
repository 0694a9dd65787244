"""The gates' facts of a batch in one statement (broadcasts/delivery/gates/facts.py): the same as each rule's own read,
and the chain decides the same with them as without them."""

import dataclasses
from datetime import timedelta

import pytest
from django.utils import timezone

from broadcasts.delivery.claims import Claimed
from broadcasts.delivery.gates.admission import GateContext, sends_admit
from broadcasts.delivery.gates.chain import GATES
from broadcasts.delivery.gates.facts import batch_facts
from broadcasts.models import MarketingHold
from broadcasts.rules.marketing_holds import holds_waiting
from broadcasts.rules.messaging_limit import limit_state
from broadcasts.rules.suppressions import suppressed_among, suppression_add
from tests.broadcasts.gate_support import gate_ctx
from tokens.models import Organization

pytestmark = pytest.mark.django_db


def _ctx(org, category: str) -> GateContext:
    return gate_ctx(org.id, category)


def _sends(numbers: list[str]) -> list[Claimed]:
    return [Claimed(id=i, index=i, to=to, variables={}, attempts=1) for i, to in enumerate(numbers)]


NUMBERS = [f"+3460000000{i}" for i in range(8)]


@pytest.fixture
def listed(org, other_org):
    """Org: two numbers suppressed, two held (one of them expired), a messaging limit; the other org's own."""
    suppression_add(organization_id=org.id, to=NUMBERS[1], source="api")
    suppression_add(organization_id=org.id, to=NUMBERS[2], source="api")
    suppression_add(organization_id=other_org.id, to=NUMBERS[3], source="api")
    now = timezone.now()
    MarketingHold.objects.create(organization_id=org.id, to=NUMBERS[4], failed_at=now, until=now + timedelta(hours=2))
    MarketingHold.objects.create(organization_id=org.id, to=NUMBERS[5], failed_at=now, until=now - timedelta(seconds=1))
    MarketingHold.objects.create(organization_id=other_org.id, to=NUMBERS[6], failed_at=now, until=now + timedelta(1))
    Organization.objects.filter(id=org.id).update(messaging_limit=2000, messaging_limit_set_at=now)
    return org


def test_marketing_facts_equal_each_rules_own_reads_in_one_query(listed, django_assert_num_queries):
    with django_assert_num_queries(1):
        facts = batch_facts(_ctx(listed, "MARKETING"), _sends(NUMBERS))
    assert facts.limit == limit_state(organization_id=listed.id)
    assert facts.limit.limit == 2000
    assert facts.suppressed == suppressed_among(organization_id=listed.id, numbers=NUMBERS) == {NUMBERS[1], NUMBERS[2]}
    own = holds_waiting(organization_id=listed.id, numbers=NUMBERS)
    assert set(facts.holds) == set(own) == {NUMBERS[4]}
    assert abs(facts.holds[NUMBERS[4]] - own[NUMBERS[4]]) < 5 and facts.holds[NUMBERS[4]] > 7000


def test_utility_reads_the_limit_alone_and_an_unknown_organization_is_unlimited(listed, django_assert_num_queries):
    with django_assert_num_queries(1):
        facts = batch_facts(_ctx(listed, "UTILITY"), _sends(NUMBERS))
    assert facts.limit.limit == 2000 and not facts.suppressed and not facts.holds
    gone = Organization(id=listed.id + 10_000)
    assert batch_facts(_ctx(gone, "MARKETING"), _sends(NUMBERS)).limit.limit is None


def test_the_chain_decides_the_same_with_the_facts_as_without(listed, other_org, settings):
    settings.MESSAGING_LIMIT_WINDOW_SECONDS = 3600
    ctx = _ctx(listed, "MARKETING")
    sends = _sends(NUMBERS)
    with_facts = sends_admit(dataclasses.replace(ctx, facts=batch_facts(ctx, sends)), sends, GATES)
    without = sends_admit(ctx, sends, GATES)
    assert [s.to for s, _ in with_facts.failed] == [s.to for s, _ in without.failed] == [NUMBERS[1], NUMBERS[2]]
    assert [s.to for s, _, _ in with_facts.deferred] == [s.to for s, _, _ in without.deferred] == [NUMBERS[4]]
    assert [s.to for s in with_facts.ready] == [s.to for s in without.ready]
    assert NUMBERS[3] in {s.to for s in with_facts.ready} and NUMBERS[6] in {s.to for s in with_facts.ready}
