"""The consent gate (broadcasts/delivery/gates/consent.py): MARKETING only, one query per batch, opted_out results."""

from datetime import UTC, datetime

import pytest

from broadcasts.delivery.claims import Claimed
from broadcasts.delivery.gates.admission import GateContext
from broadcasts.delivery.gates.chain import GATES
from broadcasts.delivery.gates.consent import consent_gate
from broadcasts.delivery.outcomes import outcome_row
from broadcasts.rules.suppressions import suppression_add
from tests.broadcasts.gate_support import gate_ctx

pytestmark = pytest.mark.django_db


def _ctx(org, category: str) -> GateContext:
    return gate_ctx(org.id, category)


def _sends(n: int) -> list[Claimed]:
    return [Claimed(id=i, index=i, to=f"+3460000000{i % 5}", variables={}, attempts=1) for i in range(n)]


def test_consent_is_the_first_gate():
    assert GATES[0] is consent_gate


def test_marketing_sends_to_listed_numbers_fail_opted_out_in_one_query(org, other_org, django_assert_num_queries):
    suppression_add(organization_id=org.id, to="+34600000001", source="api")
    suppression_add(organization_id=other_org.id, to="+34600000002", source="api")
    with django_assert_num_queries(1):
        verdict = consent_gate(_ctx(org, "MARKETING"), _sends(500))
    assert {s.to for s, _ in verdict.failed} == {"+34600000001"}
    assert len(verdict.failed) == 100 and len(verdict.ready) == 400
    send, result = verdict.failed[0]
    assert result.error.code == "opted_out" and result.error.retryable is False
    row = outcome_row(send=send, result=result, now=datetime.now(UTC))
    assert row.status == "FAILED" and row.attempts_delta == -1 and row.error_retryable is False


@pytest.mark.parametrize("category", ["UTILITY", "AUTHENTICATION"])
def test_other_categories_pass_without_a_query(org, category, django_assert_num_queries):
    suppression_add(organization_id=org.id, to="+34600000001", source="api")
    with django_assert_num_queries(0):
        verdict = consent_gate(_ctx(org, category), _sends(10))
    assert len(verdict.ready) == 10 and not verdict.failed
