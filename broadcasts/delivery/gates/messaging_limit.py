"""The messaging limit's gate (docs/rules.md): a send to a number the organization's window has no room for waits.

An adapter over broadcasts/rules/messaging_limit.py: one organization read per batch, and for a limited organization one
customer-window query and one Redis script; an unlimited organization costs no Redis call. A send that would
exceed the limit is deferred with reason "messaging_limit" until the window frees room; never posted, never
failed. Idempotent per send: a number admitted (counted) and handed back is found counted when it comes again.
"""

from __future__ import annotations

from broadcasts.delivery.claims import Claimed
from broadcasts.delivery.gates.admission import Admission, GateContext
from broadcasts.rules import messaging_limit


def messaging_limit_gate(ctx: GateContext, sends: list[Claimed]) -> Admission:
    waits = messaging_limit.admit(
        organization_id=ctx.organization_id,
        channel_id=ctx.channel_id,
        numbers=[send.to for send in sends],
        now=ctx.now,
        state=ctx.facts.limit if ctx.facts is not None else None,
        # Marked posting just before the gates: a rebuild of the count must not take them for posted ones.
        batch_ids=[send.id for send in sends],
    )
    if waits is None:
        return Admission(ready=list(sends))
    verdict = Admission()
    for send, wait in zip(sends, waits, strict=True):
        if wait > 0:
            verdict.deferred.append((send, wait, messaging_limit.WAIT_REASON))
        else:
            verdict.ready.append(send)
    return verdict
