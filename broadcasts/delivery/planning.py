"""A run's planning step, the part that runs in the pump's database thread: one batch of queued sends marked
posting (the posting gate), passed through the admission gates (delivery/gates/), given slots on the channel's
GCRA schedule and their numbers held, all in ONE hop off the loop (the loop never waits on a Redis call, which on
a shared loop made the other channels' slots late).

``batch_plan`` touches none of the run's state: run.BroadcastRun._plan applies the ``Planned`` it returns. It
raises when the database or Redis is away; the caller then hands the whole batch back (every gate is idempotent
per send).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from django.utils import timezone

from broadcasts.delivery import limiter
from broadcasts.delivery.channel_caps import ChannelCap
from broadcasts.delivery.claims import Claimed, sends_mark_posting
from broadcasts.delivery.gates import admission, chain, facts


@dataclass(slots=True)
class Planned:
    """What one planning step found: the posting gate closed, or the gates' verdict and the slots and number holds
    granted to the admitted sends (``use``; ``rest`` got no slot this time)."""

    marked_at: float
    closed: str | None = None
    verdict: admission.Admission | None = None
    grant: limiter.Grant | None = None
    use: list[Claimed] = field(default_factory=list)
    rest: list[Claimed] = field(default_factory=list)
    waits: list[float] = field(default_factory=list)
    # The channel's cap these slots were reserved at (re-read by ``cap``, else the one given).
    max_mps: int = 0


def batch_plan(
    *,
    broadcast_id: str,
    gate_context: admission.GateContext,
    max_mps: int,
    hold_seconds: float,
    batch: list[Claimed],
    cap: ChannelCap | None = None,
) -> Planned:
    """Mark the batch posting, pass what was marked through the gates, reserve slots for what they admitted and
    hold those numbers (see the module's docstring). ``cap``: the run's view of the channel's cap, re-read here at
    most once a second (a change saved meanwhile paces these slots already)."""
    if cap is not None:
        max_mps = cap.fresh()
    marked_at, marked, closed = sends_mark_posting(broadcast_id=broadcast_id, ids=[s.id for s in batch])
    planned = Planned(marked_at=marked_at, closed=closed, max_mps=max_mps)
    if closed is not None:
        return planned
    # A send no longer PENDING (final meanwhile) is not ours to post or record.
    batch = [s for s in batch if s.id in marked]
    if batch and chain.GATES:
        batch_facts = facts.batch_facts(gate_context, batch)
        ctx = dataclasses.replace(gate_context, now=timezone.now(), facts=batch_facts)
        planned.verdict = admission.sends_admit(ctx, batch, chain.GATES)
        batch = planned.verdict.ready
        if planned.verdict.pause is not None:
            return planned
    channel_id = gate_context.channel_id
    planned.grant = limiter.channel_reserve(channel_id=channel_id, max_mps=max_mps, want=len(batch))
    planned.use, planned.rest = batch[: planned.grant.count], batch[planned.grant.count :]
    if planned.use:
        planned.waits = limiter.numbers_claim(
            channel_id=channel_id,
            numbers=[s.to for s in planned.use],
            hold_seconds=hold_seconds,
            tokens=[str(s.id) for s in planned.use],
        )
    return planned
