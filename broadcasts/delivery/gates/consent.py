"""The consent gate (docs/rules.md): a MARKETING send to a number on the organization's suppression list ends FAILED
``opted_out`` without a call to Meta. Decided at posting time, so a number suppressed mid-broadcast is respected.
UTILITY and AUTHENTICATION templates pass without a query; a MARKETING batch costs one indexed query."""

from __future__ import annotations

from broadcasts.delivery.claims import Claimed
from broadcasts.delivery.gates.admission import Admission, GateContext
from broadcasts.rules.suppressions import suppressed_among
from templates_registry.models import Template
from whatsapp.client import SendResult
from whatsapp.errors import ErrorClass, GraphError

OPTED_OUT = "opted_out"
OPTED_OUT_RESULT = SendResult(
    error=GraphError(
        code=OPTED_OUT,
        title="Opted out",
        message="The number is on the organization's suppression list: no MARKETING template is sent to it "
        "(see /v1/suppressions).",
        http_status=None,
        error_class=ErrorClass.PERMANENT,
    )
)


def consent_gate(ctx: GateContext, sends: list[Claimed]) -> Admission:
    if ctx.template_category != Template.Category.MARKETING or not sends:
        return Admission(ready=list(sends))
    if ctx.facts is not None:
        suppressed: set[str] | frozenset[str] = ctx.facts.suppressed
    else:
        suppressed = suppressed_among(organization_id=ctx.organization_id, numbers=[s.to for s in sends])
    if not suppressed:
        return Admission(ready=list(sends))
    return Admission(
        ready=[s for s in sends if s.to not in suppressed],
        failed=[(s, OPTED_OUT_RESULT) for s in sends if s.to in suppressed],
    )
