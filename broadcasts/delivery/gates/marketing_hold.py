"""The admission gate of Meta's per-user marketing limit (131049; the rule is broadcasts/rules/marketing_holds.py).

A MARKETING send to a number its organization holds waits until the hold ends (deferred, reason
``marketing_hold``): never posted, never failed for it. One indexed query per batch; none for UTILITY and
AUTHENTICATION templates.
"""

from __future__ import annotations

from broadcasts.delivery.claims import Claimed
from broadcasts.delivery.gates.admission import Admission, GateContext
from broadcasts.models import WaitReason
from broadcasts.rules.marketing_holds import HELD_CATEGORY, holds_waiting

WAIT_REASON = WaitReason.MARKETING_HOLD


def marketing_hold_gate(ctx: GateContext, sends: list[Claimed]) -> Admission:
    if ctx.template_category != HELD_CATEGORY or not sends:
        return Admission(ready=list(sends))
    if ctx.facts is not None:
        waits = ctx.facts.holds
    else:
        waits = holds_waiting(organization_id=ctx.organization_id, numbers=[s.to for s in sends])
    if not waits:
        return Admission(ready=list(sends))
    verdict = Admission()
    for send in sends:
        wait = waits.get(send.to)
        if wait is None:
            verdict.ready.append(send)
        else:
            verdict.deferred.append((send, wait, WAIT_REASON))
    return verdict
