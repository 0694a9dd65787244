"""The budget gate (docs/rules.md, ``max_cost``): last of the chain, so only a send that is really posted now
reserves its price. An adapter over broadcasts/pricing.py's ``budget_reserve``; no query at all without a cap.

What fits of a batch goes on; the first send that would pass the cap and every fresh one after it are handed back
without a pause (so the sends before it in its batch are still posted); the next batch, whose first fresh send
cannot fit, pauses the broadcast ``budget_exceeded``.
"""

from __future__ import annotations

from broadcasts import pricing
from broadcasts.delivery.claims import Claimed
from broadcasts.delivery.gates.admission import Admission, GateContext


def budget_gate(ctx: GateContext, sends: list[Claimed]) -> Admission:
    if ctx.max_cost is None or ctx.rate_card_id is None or not sends:
        return Admission(ready=list(sends))
    verdict = pricing.budget_reserve(
        broadcast_id=ctx.broadcast_id,
        card_id=ctx.rate_card_id,
        category=ctx.template_category,
        sends=[(s.id, s.to) for s in sends],
    )
    admitted = set(verdict.admitted)
    ready = [s for s in sends if s.id in admitted]
    returned = [s for s in sends if s.id not in admitted]
    if returned and not ready:
        return Admission(
            returned=returned,
            pause={
                "code": pricing.BUDGET_EXCEEDED,
                "message": f"The next send would pass the broadcast's max_cost of {pricing.money(ctx.max_cost)} "
                f"(estimated spend of the sends posted: {pricing.money(verdict.posted_cost)}).",
            },
        )
    return Admission(ready=ready, returned=returned)
