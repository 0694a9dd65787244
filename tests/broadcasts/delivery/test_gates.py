"""The admission chain's own rules: gates run in order on what the previous ones admitted; a pause stops it."""

from datetime import UTC, datetime

from broadcasts.delivery.claims import Claimed
from broadcasts.delivery.gates.admission import Admission, GateContext, sends_admit
from whatsapp.client import SendResult
from whatsapp.errors import ErrorClass, GraphError

CTX = GateContext(
    broadcast_id="b" * 24, organization_id=1, channel_id="c" * 24, template_category="MARKETING", now=datetime.now(UTC)
)


def _sends(n: int) -> list[Claimed]:
    return [Claimed(id=i, index=i, to=f"+3460000000{i}", variables={}, attempts=1) for i in range(n)]


def _failed(send: Claimed) -> SendResult:
    return SendResult(
        error=GraphError(code="opted_out", title="t", message="m", http_status=None, error_class=ErrorClass.PERMANENT)
    )


def test_each_gate_sees_only_what_the_previous_admitted():
    seen: list[list[int]] = []

    def fail_even(ctx, sends):
        seen.append([s.id for s in sends])
        return Admission(ready=[s for s in sends if s.id % 2], failed=[(s, _failed(s)) for s in sends if not s.id % 2])

    def defer_first(ctx, sends):
        seen.append([s.id for s in sends])
        return Admission(ready=sends[1:], deferred=[(sends[0], 5.0, "messaging_limit")])

    verdict = sends_admit(CTX, _sends(6), gates=[fail_even, defer_first])

    assert seen == [[0, 1, 2, 3, 4, 5], [1, 3, 5]]
    assert [s.id for s in verdict.ready] == [3, 5]
    assert [(s.id, wait, reason) for s, wait, reason in verdict.deferred] == [(1, 5.0, "messaging_limit")]
    assert [s.id for s, _ in verdict.failed] == [0, 2, 4]
    assert verdict.pause is None and verdict.returned == []


def test_a_pause_hands_back_everything_not_yet_admitted_and_stops_the_chain():
    def pause_after_two(ctx, sends):
        return Admission(ready=sends[:2], returned=sends[2:], pause={"code": "budget_exceeded", "message": "m"})

    def never(ctx, sends):
        raise AssertionError("a gate after a pause must not run")

    verdict = sends_admit(CTX, _sends(5), gates=[pause_after_two, never])

    assert verdict.pause == {"code": "budget_exceeded", "message": "m"}
    assert verdict.ready == []
    assert sorted(s.id for s in verdict.returned) == [0, 1, 2, 3, 4]


def test_no_gates_admit_everything():
    sends = _sends(3)
    assert sends_admit(CTX, sends, gates=[]).ready == sends
