"""Admission gates: the rules a claimed, marked send must pass at posting time, before the channel's pacing.

Each gate looks at a batch of sends about to be posted and says, per send: go on (``ready``), wait
(``deferred``: PENDING again after ``wait`` seconds, for a ``reason`` shown in the broadcast's ``waiting``), or
end without a call to Meta (``failed``, with the result to record). A gate may also pause the broadcast
(``pause``: its ``paused_reason``); then nothing of the batch is posted: every send without a failure or a wait
(the pausing gate's ``ready`` included) is handed back untouched, and a gate that reserved something for those
sends (a budget) must let a send admitted again later reserve it only once.

Each rule's gate is a ``gate_<rule>.py`` module of this package (an adapter over the rule's own module, e.g.
``broadcasts/rules/suppressions.py``); ``gate_chain.GATES`` orders them. Gates run in order on what the previous ones
admitted, in the run's database thread (they may read the database
and Redis). A gate that cannot decide (Redis or the database away) raises, and the batch is tried again shortly:
nothing is posted unchecked. A gate must be idempotent per send: a send it admitted may come back (not granted a
slot this time) and be admitted again.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from broadcasts.delivery.claims import Claimed
from broadcasts.rules.messaging_limit import LimitState
from tokens.frequency_cap import FrequencyCap
from whatsapp.client import SendResult


@dataclass(frozen=True, slots=True)
class BatchFacts:
    """What the rules' gates read for one batch, fetched in ONE statement before the chain runs
    (gate_facts.batch_facts): the organization's messaging limit and, for a MARKETING template, which of the
    batch's numbers are suppressed and which are held (seconds left), and its marketing frequency cap. A gate
    called without facts (on its own, as the tests call it) reads its own through the same rule."""

    limit: LimitState
    suppressed: frozenset[str] = frozenset()
    holds: dict[str, float] = field(default_factory=dict)
    # The organization's marketing frequency cap (MARKETING batches only; None: off).
    frequency_cap: FrequencyCap | None = None


@dataclass(frozen=True, slots=True)
class GateContext:
    """What a gate may need to know about the run: ids, the template's category, the posting time."""

    broadcast_id: str
    organization_id: int
    channel_id: str
    template_category: str
    now: datetime
    # The spending cap (docs/rules.md) and the rate card that prices it: None when the broadcast has no cap.
    max_cost: Decimal | None = None
    rate_card_id: int | None = None
    # The broadcast's send window as stored (docs/rules.md), None when it has none.
    send_window: dict | None = None
    # This batch's facts, read together before the chain runs (None: each gate reads its own).
    facts: BatchFacts | None = None


@dataclass(slots=True)
class Admission:
    """One gate's (or the chain's) verdict on a batch; every send of the batch is in exactly one list."""

    ready: list[Claimed] = field(default_factory=list)
    # (send, wait in seconds, reason): reason is a broadcasts.models.WaitReason.
    deferred: list[tuple[Claimed, float, str]] = field(default_factory=list)
    failed: list[tuple[Claimed, SendResult]] = field(default_factory=list)
    # Sends handed back without a verdict (the broadcast pauses): back to the queue, their marks released.
    returned: list[Claimed] = field(default_factory=list)
    pause: dict | None = None


Gate = Callable[[GateContext, list[Claimed]], Admission]


def sends_admit(ctx: GateContext, sends: list[Claimed], gates: Sequence[Gate]) -> Admission:
    """Run the batch through the gates in order; a pause stops the chain and hands back what was not admitted."""
    verdict = Admission(ready=list(sends))
    for gate in gates:
        if not verdict.ready:
            break
        step = gate(ctx, verdict.ready)
        verdict.ready = step.ready
        verdict.deferred += step.deferred
        verdict.failed += step.failed
        verdict.returned += step.returned
        if step.pause is not None:
            verdict.pause = step.pause
            verdict.returned += verdict.ready
            verdict.ready = []
            break
    return verdict
