"""The marketing frequency cap's gate (docs/rules.md; the rule and its SQL are broadcasts/rules/frequency_cap.py): a
MARKETING send to an address that already has the organization's N MARKETING sends within D days ends FAILED
``frequency_capped`` (``retryable: true``: a ``retry`` once the window has moved on may post it) without a call to
Meta. After consent and the regions (those fail for good first), before the waits. Costs nothing without a cap (read
with the batch's facts); with one, one transaction per MARKETING batch (advisory locks, one indexed count)."""

from __future__ import annotations

from dataclasses import dataclass

from broadcasts.delivery.claims import Claimed
from broadcasts.delivery.gates.admission import Admission, GateContext
from broadcasts.rules.frequency_cap import CAPPED_CATEGORY, FREQUENCY_CAPPED, frequency_cap_read, sends_cap
from whatsapp.client import SendResult
from whatsapp.errors import ErrorClass, GraphError


@dataclass(frozen=True, slots=True)
class _RetryableRefusal(GraphError):
    """Refused without a POST, yet ``retryable``: the cap's window moves on, so a later ``retry`` may post it."""

    @property
    def retryable(self) -> bool:
        return True


def capped_result(*, sends: int, days: int) -> SendResult:
    return SendResult(
        error=_RetryableRefusal(
            code=FREQUENCY_CAPPED,
            title="Frequency capped",
            message=f"The organization's marketing frequency cap ({sends} MARKETING sends per number per {days} "
            f"day{'s' if days != 1 else ''}) is reached for this number: not sent.",
            http_status=None,
            error_class=ErrorClass.PERMANENT,
        )
    )


def frequency_cap_gate(ctx: GateContext, sends: list[Claimed]) -> Admission:
    if ctx.template_category != CAPPED_CATEGORY or not sends:
        return Admission(ready=list(sends))
    if ctx.facts is not None:
        cap = ctx.facts.frequency_cap
    else:
        cap = frequency_cap_read(organization_id=ctx.organization_id)
    if cap is None:
        return Admission(ready=list(sends))
    capped = sends_cap(organization_id=ctx.organization_id, cap=cap, sends=[(s.id, s.to) for s in sends], now=ctx.now)
    if not capped:
        return Admission(ready=list(sends))
    result = capped_result(sends=cap.sends, days=cap.days)
    return Admission(
        ready=[s for s in sends if s.id not in capped],
        failed=[(s, result) for s in sends if s.id in capped],
    )
