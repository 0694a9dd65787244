"""The regions gate (docs/rules.md; the rule is broadcasts/rules/marketing_regions.py): a MARKETING send to a number
of a region in MARKETING_BLOCKED_REGIONS, or to a BSUID whose country prefix is one, ends FAILED
``marketing_region_blocked`` (``retryable: false``) without a call to Meta. Decided at posting time from the address
alone: no query; UTILITY and AUTHENTICATION templates pass untouched."""

from __future__ import annotations

from broadcasts.delivery.claims import Claimed
from broadcasts.delivery.gates.admission import Admission, GateContext
from broadcasts.rules.marketing_regions import BLOCKED_CATEGORY, MARKETING_REGION_BLOCKED, blocked_among
from whatsapp.client import SendResult
from whatsapp.errors import ErrorClass, GraphError

REGION_BLOCKED_RESULT = SendResult(
    error=GraphError(
        code=MARKETING_REGION_BLOCKED,
        title="Marketing region blocked",
        message="Meta delivers no MARKETING template to this region (MARKETING_BLOCKED_REGIONS): not sent.",
        http_status=None,
        error_class=ErrorClass.PERMANENT,
    )
)


def region_gate(ctx: GateContext, sends: list[Claimed]) -> Admission:
    if ctx.template_category != BLOCKED_CATEGORY or not sends:
        return Admission(ready=list(sends))
    blocked = blocked_among(category=ctx.template_category, addresses=[s.to for s in sends])
    if not blocked:
        return Admission(ready=list(sends))
    return Admission(
        ready=[s for s in sends if s.to not in blocked],
        failed=[(s, REGION_BLOCKED_RESULT) for s in sends if s.to in blocked],
    )
