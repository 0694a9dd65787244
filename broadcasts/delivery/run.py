"""One broadcast's run inside a pump: post its claimed sends at their slots, record what Meta answered.

A ``BroadcastRun`` keeps two coroutines on the pump's event loop: ``run`` does the bookkeeping (outcome writes
every CHECK_INTERVAL_SECONDS with a look at the broadcast's status, claims, slot reservations, all awaiting the
runtime's database thread) and ``_fire`` fires each reserved slot on time beside it, so a slow write never makes
a slot late. Every POST passes the posting gate (claims.sends_mark_posting) and the channel's pacing (the shared
GCRA schedule and the pump's PostLog). On Meta's account-level error the run pauses the broadcast
(lifecycle.broadcast_pause_for_account_error) and stops.

Each turn of ``run`` is a few named steps: stop when told to (``_stopping``), record the outcomes and read the
status (``_record_outcomes``), claim more (``_refill``), plan the next slots (``_plan``: its database and Redis
work is planning.batch_plan, one hop to the DB thread), hand the channel on once nothing is left to claim, doze
until the next step is due; ``_wind_down`` ends the run. Its bases hold the rest: the posting side (``_fire``,
``_post``) is run_posting.RunPosting, the outcome keeping (answers, journal, writes, deferred sends)
run_outcomes.RunOutcomes.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from django import db
from django.utils import timezone
from redis.exceptions import RedisError

from broadcasts import lifecycle
from broadcasts.delivery import limiter, pacing
from broadcasts.delivery.channel_caps import ChannelCap
from broadcasts.delivery.claims import POST_PERMIT_SECONDS, Claimed, claim_size, sends_claim
from broadcasts.delivery.gates import admission
from broadcasts.delivery.outcomes import OutcomeRow
from broadcasts.delivery.pacing import PostLog
from broadcasts.delivery.planning import Planned, batch_plan
from broadcasts.delivery.run_outcomes import RunReport
from broadcasts.delivery.run_posting import MAX_BOOKKEEPING_SLEEP_SECONDS, RunPosting
from broadcasts.delivery.runtime import Runtime, in_db_thread
from broadcasts.models import Broadcast, BroadcastStatus, SendStatus, WaitReason
from broadcasts.rules import template_pauses
from whatsapp.errors import ErrorClass

logger = logging.getLogger(__name__)
T = TypeVar("T")

# Outcomes are written at least this often while a run goes, so a webhook for a fresh wamid finds its send
# and a killed worker loses at most ~0.5 s of recorded work; the broadcast status is read at the same beat.
CHECK_INTERVAL_SECONDS = 0.5
# No new claims this close to the posting deadline: the claimed sends would only be handed back.
REFILL_STOP_SECONDS = 0.5
# Slots are planned while the schedule reaches less than this far ahead (half the limiter's horizon, plus the lead).
PLAN_AHEAD_SECONDS = limiter.HORIZON_SECONDS / 2 + limiter.LEAD_SECONDS


class BroadcastRun(RunPosting):
    """Posts one broadcast's claimed sends on the process's event loop; all state here is this run's only."""

    def __init__(
        self,
        *,
        broadcast: Broadcast,
        sends: list[Claimed],
        runtime: Runtime,
        first_id: int,
        last_id: int,
        deadline: float,
        give_up_at: float,
        log: PostLog,
        db_thread: ThreadPoolExecutor | None = None,
    ):
        self.broadcast = broadcast
        self.first_id, self.last_id = first_id, last_id
        self.claim_size = claim_size(max_mps=broadcast.channel.max_mps)
        # No new slot after this (time.monotonic()): shared by every run of one pump.
        self.deadline = deadline
        # Outcome writes that fail are tried again until this (time.monotonic()), just before the soft time limit.
        self.give_up_at = give_up_at
        self.exhausted = False
        # Called once the broadcast has nothing left to claim and its last slots are reserved: the pump starts
        # the channel's next broadcast, whose slots then follow these without a gap.
        self.on_exhausted: Callable[[], None] | None = None
        # A MARKETING run's question to its pump: does a priority run want slots now? Then it plans none
        # (category lanes, lanes.py).
        self.yield_to: Callable[[], bool] | None = None
        # The run's steps are over (only its wind-down and final write remain).
        self.done = False
        self.finished = False
        self.channel = broadcast.channel
        self.runtime = runtime
        # The pump's database thread (its own connection): every DB step of this run goes there, in order.
        self.db_thread = db_thread or runtime.db
        self.queue: deque[Claimed] = deque(sends)
        self._outcomes_init()
        self._posting_init(broadcast=broadcast, log=log)
        self.report = RunReport(claimed=len(sends))
        # The broadcast's status when the posting gate found it no longer IN_PROGRESS.
        self.gate_closed: str | None = None
        # A gate's pause (its paused_reason): the run pauses the broadcast and stops, like on an account error.
        self.gate_pause: dict | None = None
        self.gate_context = admission.GateContext(
            broadcast_id=broadcast.id,
            organization_id=broadcast.organization_id,
            channel_id=self.channel.id,
            template_category=broadcast.template.category,
            now=timezone.now(),
            max_cost=broadcast.max_cost,
            rate_card_id=broadcast.rate_card_id,
            send_window=broadcast.send_window,
        )
        self.paused = False
        self.store_down = False
        self.stop: str | None = None
        self.status_seen = BroadcastStatus.IN_PROGRESS
        self.batch = pacing.plan_batch(max_mps=self.channel.max_mps)
        # The channel's cap, re-read by the planning step at most once a second (a change in the admin applies).
        self.cap = ChannelCap(channel_id=self.channel.id, max_mps=self.channel.max_mps)
        if self.log.max_mps != self.cap.max_mps:
            self.log.cap_set(self.cap.max_mps)
        self.hold = pacing.number_hold_seconds()
        # When the bookkeeping next writes the outcomes (and reads the status), and next plans slots.
        self.next_check = 0.0
        self.next_plan = 0.0

    async def run_in_db(self, fn: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.db_thread, in_db_thread(fn))

    async def run(self) -> None:
        """Bookkeeping (outcome writes, status checks, claims, slot reservations) runs here; firing the reserved
        slots runs in ``_fire`` beside it on the same loop, so a slow database write never makes a slot late."""
        halt = asyncio.Event()
        planned = asyncio.Event()
        firing = asyncio.get_running_loop().create_task(self._fire(halt, planned))
        self.next_check = time.monotonic() + CHECK_INTERVAL_SECONDS
        while not firing.done():
            now = time.monotonic()
            if self._stopping():
                break
            if now >= self.next_journal:
                self._journal_answers()
            if now >= self.next_check:
                await self._record_outcomes()
                if self.status_seen != BroadcastStatus.IN_PROGRESS:
                    self.stop = str(self.status_seen).lower()
                    break
            if now >= self.deadline:
                self.stop = "deadline"
                break
            if self._wants_claims(now):
                await self._refill()
            if self._wants_slots(now):
                self.next_plan = await self._plan()
                planned.set()
            if self.exhausted and not self.queue and self.on_exhausted is not None:
                # Nothing left to claim, the last slots reserved: the pump starts the channel's next broadcast.
                self.on_exhausted()
                self.on_exhausted = None
            if not self.schedule and not self.queue:
                break
            await self._doze()
        self.done = True
        halt.set()
        planned.set()
        await firing
        await self._wind_down()

    def _stopping(self) -> bool:
        """True when the run stops before its next step: on a pausing answer, a gate's pause or a closed posting
        gate; sets ``stop`` (and ``status_seen`` to what the posting gate found)."""
        if self.account_error is not None:
            self.stop = "account_error"
            return True
        if self.gate_pause is not None and not self.schedule:
            # A gate's pause plans nothing more, but the slots already given to sends that passed every gate
            # still fire (a budget pause comes at the send after them, not before).
            self.stop = "gate_pause"
            return True
        if self.gate_closed is not None:
            # Paused or cancelled: the gate let nothing more through; what is in flight is still recorded.
            self.status_seen = self.gate_closed
            self.stop = str(self.gate_closed).lower()
            return True
        return False

    async def _record_outcomes(self) -> None:
        """Every CHECK_INTERVAL_SECONDS: push the POST counts, write the outcomes and deferred sends so far and read
        the broadcast's status (``status_seen``) in the same hop to the DB thread."""
        self._rate_push()
        results = self._take_results()
        self.next_check = time.monotonic() + CHECK_INTERVAL_SECONDS
        try:
            self.status_seen = await self.run_in_db(functools.partial(self._flush, results, self._take_deferred()))
            self.store_down = False
        except (db.Error, RedisError):
            # The database is away (restart): the outcomes are kept (and journaled) for the next try, and
            # nothing new is posted (no send can be marked).
            logger.warning("delivery: outcome UPDATE failed; retrying in %.1f s", CHECK_INTERVAL_SECONDS)
            self.store_down = True

    def _wants_claims(self, now: float) -> bool:
        """Claim more when the queue is short of two planning batches, while the store answers and there is time."""
        return (
            not self.exhausted
            and not self.store_down
            and len(self.queue) < 2 * self.batch
            and now < self.deadline - REFILL_STOP_SECONDS
        )

    def _wants_slots(self, now: float) -> bool:
        """Plan when sends wait, the store answers, no gate paused, the last plan asked for no wait and the slots
        already given reach less than PLAN_AHEAD_SECONDS ahead."""
        horizon = self.schedule[-1][0] if self.schedule else now
        return (
            bool(self.queue)
            and not self.store_down
            and self.gate_pause is None
            and now >= self.next_plan
            and horizon - now < PLAN_AHEAD_SECONDS
            and (self.yield_to is None or not self.yield_to())
        )

    def wants_priority(self) -> bool:
        """For a priority run: True while it has (or is about to claim) sends that want slots, so the channel's
        MARKETING runs leave the schedule to it."""
        if self.done or self.store_down or self.gate_pause is not None or self.gate_closed is not None:
            return False
        return bool(self.queue) or (not self.exhausted and self.report.claimed == 0)

    async def _doze(self) -> None:
        """Sleep until the next check, the deadline or the next planning is due; never long, since sends given up
        as late come back to the queue and want new slots."""
        wake = min(self.next_check, self.deadline)
        if self.queue and not self.store_down:
            plan_at = self.schedule[-1][0] - PLAN_AHEAD_SECONDS if self.schedule else 0
            wake = min(wake, max(self.next_plan, plan_at))
        await asyncio.sleep(max(0.001, min(wake - time.monotonic(), MAX_BOOKKEEPING_SLEEP_SECONDS)))

    async def _wind_down(self) -> None:
        """After the last step: hand back the slots not fired, pause the broadcast on a gate's pause or a pausing
        answer, and wait for the POSTs still in flight."""
        self._rate_push()
        # Not fired: back to the front of the queue, in order, and their numbers free again (they were held
        # for a POST that did not happen; the next run would otherwise wait 6 s for them).
        while self.schedule:
            send = self.schedule.pop()[1]
            self.queue.appendleft(send)
            self._release_number(send)
        if self.gate_pause is not None:
            await self.run_in_db(self._pause_for_gate)
        if self.account_error is not None:
            # Pause first, so the other workers' runs see it at their next check; then wait for answers.
            await self.run_in_db(self._pause_for)
            # The chunk's log line says why the run stopped (the pause itself is logged by lifecycle).
            self.stop = self.stop or "account_error"
        if self.in_flight:
            await asyncio.gather(*self.in_flight, return_exceptions=True)
        if self.account_error is not None and not self.paused:
            if self.stop is None:
                self.stop = "account_error"
            await self.run_in_db(self._pause_for)

    def _pause_for(self) -> None:
        assert self.account_error is not None and self.account_error.error is not None
        error = self.account_error.error
        self.paused = True
        reason = {"code": error.code, "message": error.message}
        if error.error_class is ErrorClass.TEMPLATE:
            reason = template_pauses.pause_reason_for_error(code=error.code, message=error.message)
        # False when already paused, cancelled or finished by someone else: nothing to do either way.
        lifecycle.broadcast_pause_for_account_error(broadcast_id=self.broadcast.id, reason=reason)

    def _pause_for_gate(self) -> None:
        assert self.gate_pause is not None
        self.paused = True
        lifecycle.broadcast_pause_for_account_error(broadcast_id=self.broadcast.id, reason=self.gate_pause)

    async def _refill(self) -> None:
        """Claim the broadcast's next due sends before the queue runs dry, so the channel does not idle."""
        try:
            more = await self.run_in_db(
                lambda: sends_claim(
                    broadcast_id=self.broadcast.id,
                    first_id=self.first_id,
                    last_id=self.last_id,
                    now=timezone.now(),
                    limit=self.claim_size,
                )
            )
        except db.Error:
            self.store_down = True
            return
        if not more:
            self.exhausted = True
            return
        self.report.claimed += len(more)
        self.queue.extend(more)

    async def _plan(self) -> float:
        """Reserve the next slots and give them to queued sends whose number is free; returns when to plan next.
        A gate's failures are recorded without a POST, its waits handed back with the next outcome write, and its
        pause stops the run (the sends it did not admit go back to the queue)."""
        batch = [self.queue.popleft() for _ in range(min(self.batch, len(self.queue)))]
        try:
            planned = await self.run_in_db(
                functools.partial(
                    batch_plan,
                    broadcast_id=self.broadcast.id,
                    gate_context=self.gate_context,
                    max_mps=self.cap.max_mps,
                    hold_seconds=self.hold,
                    batch=batch,
                    cap=self.cap,
                )
            )
        except (db.Error, RedisError):
            # Database or Redis away for a moment: nothing is sent unmarked or unpaced; try again shortly.
            logger.warning("delivery: cannot mark or pace sends; retrying in %.1f s", CHECK_INTERVAL_SECONDS)
            self.queue.extendleft(reversed(batch))
            return time.monotonic() + CHECK_INTERVAL_SECONDS
        if planned.max_mps != self.log.max_mps:
            self._cap_apply(planned.max_mps)
        if planned.closed is not None:
            self.queue.extendleft(reversed(batch))
            self.gate_closed = planned.closed
            return time.monotonic() + CHECK_INTERVAL_SECONDS
        if planned.verdict is not None and self._gates_paused(planned.verdict):
            return time.monotonic() + CHECK_INTERVAL_SECONDS
        return self._schedule_granted(planned)

    def _cap_apply(self, max_mps: int) -> None:
        """The channel's cap changed while running: the pump's one-second log, the batch and the claims follow it
        (the slots already reserved, at most the limiter's horizon ahead, fire at the old pace)."""
        self.log.cap_set(max_mps)
        self.batch = pacing.plan_batch(max_mps=max_mps)
        self.claim_size = claim_size(max_mps=max_mps)

    def _gates_paused(self, verdict: admission.Admission) -> bool:
        """Apply the gates' verdict to the run: failures recorded without a POST, waits deferred, returned sends
        back at the front of the queue; True when a gate paused the broadcast (nothing of the batch is scheduled)."""
        now = timezone.now()
        self.results += [(send, result, now) for send, result in verdict.failed]
        self.deferred += verdict.deferred
        if verdict.returned:
            self.queue.extendleft(reversed(verdict.returned))
        if verdict.pause is not None:
            if self.gate_pause is None:
                self.gate_pause = verdict.pause
            return True
        return False

    def _schedule_granted(self, planned: Planned) -> float:
        """Give the granted slots, in order, to the sends whose number is free (the others wait, deferred); the
        sends without a slot go back to the queue. Returns when to plan next."""
        grant = planned.grant
        assert grant is not None
        self.queue.extendleft(reversed(planned.rest))
        if grant.count == 0:
            return grant.first_at - limiter.HORIZON_SECONDS - limiter.LEAD_SECONDS
        ready = []
        for send, wait in zip(planned.use, planned.waits, strict=True):
            if wait > 0:
                self.deferred.append((send, wait, WaitReason.THROUGHPUT))
            else:
                ready.append(send)
        # Slots are used in order; those of deferred sends go unused (never saved up: no burst later).
        permit = planned.marked_at + POST_PERMIT_SECONDS
        self.schedule.extend((slot, send, permit) for slot, send in zip(grant.slot_times(), ready, strict=False))
        return 0.0

    def finish(self) -> None:
        """Record the last outcomes and hand back what was not posted (runs in the DB thread; once).

        A failed write is tried again until the database answers or the run's time is up (its sends' leases
        outlive the task, so nobody takes them back meanwhile); the final outcomes are in the journal by then.
        """
        if self.finished:
            return
        self.finished = True
        rows = self._take_deferred()
        for send in self.queue:
            rows.append(OutcomeRow(id=send.id, status=SendStatus.PENDING, attempts_delta=-1, posted=False))
        status = self._flush_retrying(self._take_results(), rows)
        if status is not None:
            self.status_seen = status
        cancelled = self.status_seen == BroadcastStatus.CANCELLED
        self.report.deferred = self.deferred_count
        self.report.released = 0 if cancelled else len(self.queue)
