"""One broadcast's run inside a pump: post its claimed sends at their slots, record what Meta answered.

A ``BroadcastRun`` keeps two coroutines on the pump's event loop: ``run`` does the bookkeeping (outcome writes
every CHECK_INTERVAL_SECONDS with a look at the broadcast's status, claims, slot reservations, all awaiting the
runtime's database thread) and ``_fire`` fires each reserved slot on time beside it, so a slow write never makes
a slot late. Every POST passes the posting gate (claims.sends_mark_posting) and the channel's pacing (the shared
GCRA schedule and the pump's PostLog). On Meta's account-level error the run pauses the broadcast
(lifecycle.broadcast_pause_for_account_error) and stops.

The outcome keeping (answers, journal, writes, deferred sends) is its base class, run_outcomes.RunOutcomes; the
two coroutines here share the queue, the schedule and the stop conditions of one run.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TypeVar

from django import db
from django.conf import settings
from django.utils import timezone
from redis.exceptions import RedisError

from broadcasts import lifecycle
from broadcasts.delivery import limiter, pacing
from broadcasts.delivery.claims import POST_PERMIT_SECONDS, Claimed, claim_size, sends_claim, sends_mark_posting
from broadcasts.delivery.gates import admission, chain, facts
from broadcasts.delivery.outcomes import (
    OutcomeRow,
    missing_variables_result,
)
from broadcasts.delivery.pacing import PostLog
from broadcasts.delivery.run_outcomes import RunOutcomes, RunReport
from broadcasts.delivery.runtime import Runtime, in_db_thread
from broadcasts.metrics import channel_posts_add
from broadcasts.models import Broadcast, BroadcastStatus, SendStatus, WaitReason
from broadcasts.rules import template_pauses
from core.metrics import META_REQUEST_SECONDS
from whatsapp.client import SendResult, send_path
from whatsapp.errors import ErrorClass
from whatsapp.payload import MissingVariablesError, TemplateMessageBuilder, callback_reference

logger = logging.getLogger(__name__)
T = TypeVar("T")

# Answers that pause the whole broadcast and stop the run: account-level errors, and 132015/132016 (template).
PAUSING_CLASSES = (ErrorClass.ACCOUNT, ErrorClass.TEMPLATE)

# Outcomes are written at least this often while a run goes, so a webhook for a fresh wamid finds its send
# and a killed worker loses at most ~0.5 s of recorded work; the broadcast status is read at the same beat.
CHECK_INTERVAL_SECONDS = 0.5
# The longest either coroutine of a run sleeps: bounds how fast it notices a stop or requeued sends.
MAX_BOOKKEEPING_SLEEP_SECONDS = 0.05
# No new claims this close to the posting deadline: the claimed sends would only be handed back.
REFILL_STOP_SECONDS = 0.5


@dataclass(slots=True)
class _Planned:
    """What one planning step (BroadcastRun._plan_in_db) found: the posting gate closed, or the gates' verdict and
    the slots and number holds granted to the admitted sends (``use``; ``rest`` got no slot this time)."""

    marked_at: float
    closed: str | None = None
    verdict: admission.Admission | None = None
    grant: limiter.Grant | None = None
    use: list[Claimed] = field(default_factory=list)
    rest: list[Claimed] = field(default_factory=list)
    waits: list[float] = field(default_factory=list)


class BroadcastRun(RunOutcomes):
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
        # This process's POSTs on the channel over the last second: shared by the pump's runs.
        self.log = log
        self.exhausted = False
        # Called once the broadcast has nothing left to claim and its last slots are reserved: the pump starts
        # the channel's next broadcast, whose slots then follow these without a gap.
        self.on_exhausted: Callable[[], None] | None = None
        self.finished = False
        self.channel = broadcast.channel
        self.builder = TemplateMessageBuilder(broadcast.template, header_media=broadcast.header_media)
        self.runtime = runtime
        # The pump's database thread (its own connection): every DB step of this run goes there, in order.
        self.db_thread = db_thread or runtime.db
        self.client = runtime.graph_client()
        self.queue: deque[Claimed] = deque(sends)
        self._outcomes_init()
        self.report = RunReport(claimed=len(sends))
        # The broadcast's status when the posting gate found it no longer IN_PROGRESS.
        self.gate_closed: str | None = None
        self.account_error: SendResult | None = None
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
        )
        self.paused = False
        self.store_down = False
        self.stop: str | None = None
        self.status_seen = BroadcastStatus.IN_PROGRESS
        self.batch = pacing.plan_batch(max_mps=self.channel.max_mps)
        self.hold = pacing.number_hold_seconds()
        # Metrics: each POST's latency (one observe), and POSTs per wall-clock second, added to Redis every check
        # for msg_channel_sends_per_second (broadcasts/metrics.py).
        # Marketing Messages API or /messages: chosen once per run (CONTRACT 6), and named in the latency's label.
        self.send_path = send_path(
            category=broadcast.template.category, marketing_messages=self.channel.marketing_messages
        )
        self.latency = META_REQUEST_SECONDS.labels(self.channel.id, self.send_path)
        self.wall_offset = time.time() - time.monotonic()
        self.post_counts: dict[int, int] = {}

    async def run_in_db(self, fn: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.db_thread, in_db_thread(fn))

    async def _post(self, send: Claimed) -> None:
        try:
            # The send's reference rides along (biz_opaque_callback_data): its status webhooks find it even when
            # the answer to this POST is lost (CONTRACT 6).
            payload = self.builder.build(
                send.to,
                send.variables,
                send.header_media,
                send.buttons,
                callback=callback_reference(self.broadcast.id, send.index),
            )
        except MissingVariablesError as exc:
            # Normally failed at creation; a template edited since then is caught here, without a POST.
            self.results.append((send, missing_variables_result(exc), timezone.now()))
            return
        sent_at = time.monotonic()
        result = await self.client.send_message(
            phone_number_id=self.channel.phone_number_id,
            access_token=self.channel.access_token,
            payload=payload,
            path=self.send_path,
        )
        elapsed = time.monotonic() - sent_at
        self.latency.observe(elapsed)
        if result.ok:
            self.log.answered(elapsed)
        self.report.posted += 1
        self.results.append((send, result, timezone.now()))
        if sent_at + elapsed >= self.next_journal:
            # Here, not in the bookkeeping coroutine, which may be awaiting a slow database write meanwhile.
            self._journal_answers()
        if result.error is not None and not result.unknown:
            self._release_number(send)
        if result.error_class in PAUSING_CLASSES and self.account_error is None:
            self.account_error = result

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

    async def run(self) -> None:
        """Bookkeeping (outcome writes, status checks, claims, slot reservations) runs here; firing the reserved
        slots runs in ``_fire`` beside it on the same loop, so a slow database write never makes a slot late."""
        loop = asyncio.get_running_loop()
        deadline = self.deadline
        next_check = time.monotonic() + CHECK_INTERVAL_SECONDS
        # (slot, send, permit): the POST goes at its slot, and only before its permit ends (see sends_mark_posting).
        schedule: deque[tuple[float, Claimed, float]] = deque()
        in_flight: set[asyncio.Task] = set()
        next_plan = 0.0
        halt = asyncio.Event()
        planned = asyncio.Event()
        firing = loop.create_task(self._fire(schedule, in_flight, halt, planned))

        while not firing.done():
            now = time.monotonic()
            if self.account_error is not None:
                self.stop = "account_error"
                break
            if self.gate_pause is not None and not schedule:
                # A gate's pause plans nothing more, but the slots already given to sends that passed every gate
                # still fire (a budget pause comes at the send after them, not before).
                self.stop = "gate_pause"
                break
            if self.gate_closed is not None:
                # Paused or cancelled: the gate let nothing more through; what is in flight is still recorded.
                self.status_seen = self.gate_closed
                self.stop = str(self.gate_closed).lower()
                break
            if now >= self.next_journal:
                self._journal_answers()
            if now >= next_check:
                self._rate_push()
                results = self._take_results()
                next_check = time.monotonic() + CHECK_INTERVAL_SECONDS
                try:
                    self.status_seen = await self.run_in_db(
                        functools.partial(self._flush, results, self._take_deferred())
                    )
                    self.store_down = False
                except (db.Error, RedisError):
                    # The database is away (restart): the outcomes are kept (and journaled) for the next try, and
                    # nothing new is posted (no send can be marked).
                    logger.warning("delivery: outcome UPDATE failed; retrying in %.1f s", CHECK_INTERVAL_SECONDS)
                    self.store_down = True
                if self.status_seen != BroadcastStatus.IN_PROGRESS:
                    self.stop = str(self.status_seen).lower()
                    break
            if now >= deadline:
                self.stop = "deadline"
                break
            if (
                not self.exhausted
                and not self.store_down
                and len(self.queue) < 2 * self.batch
                and now < deadline - REFILL_STOP_SECONDS
            ):
                await self._refill()
            horizon = schedule[-1][0] if schedule else now
            if (
                self.queue
                and not self.store_down
                and self.gate_pause is None
                and now >= next_plan
                and horizon - now < limiter.HORIZON_SECONDS / 2 + limiter.LEAD_SECONDS
            ):
                next_plan = await self._plan(schedule)
                planned.set()
            if self.exhausted and not self.queue and self.on_exhausted is not None:
                self.on_exhausted()
                self.on_exhausted = None
            if not schedule and not self.queue:
                break
            wake = min(next_check, deadline)
            if self.queue and not self.store_down:
                plan_at = schedule[-1][0] - limiter.HORIZON_SECONDS / 2 - limiter.LEAD_SECONDS if schedule else 0
                wake = min(wake, max(next_plan, plan_at))
            # Never asleep long: sends given up as late come back to the queue and want new slots.
            await asyncio.sleep(max(0.001, min(wake - time.monotonic(), MAX_BOOKKEEPING_SLEEP_SECONDS)))

        halt.set()
        planned.set()
        await firing
        self._rate_push()

        # Not fired: back to the front of the queue, in order, and their numbers free again (they were held
        # for a POST that did not happen; the next run would otherwise wait 6 s for them).
        while schedule:
            send = schedule.pop()[1]
            self.queue.appendleft(send)
            self._release_number(send)
        if self.gate_pause is not None:
            await self.run_in_db(self._pause_for_gate)
        if self.account_error is not None:
            # Pause first, so the other workers' runs see it at their next check; then wait for answers.
            await self.run_in_db(self._pause_for)
        if in_flight:
            await asyncio.gather(*in_flight, return_exceptions=True)
        if self.account_error is not None and not self.paused:
            if self.stop is None:
                self.stop = "account_error"
            await self.run_in_db(self._pause_for)

    async def _fire(
        self,
        schedule: deque[tuple[float, Claimed, float]],
        in_flight: set[asyncio.Task],
        halt: asyncio.Event,
        planned: asyncio.Event,
    ) -> None:
        """Fire every slot that is due; POSTs run concurrently on the loop.

        A slot missed by more than the log's tolerance (this process was descheduled) is given up and re-planned.
        The tolerance is short (25 ms) while the pump's PostLog has not seen a full second of the channel (a fresh
        pump after a hand-over: late slots next to the last pump's on-time ones could put more than max_mps into
        one second); after that the log bounds every second itself, and slots up to 250 ms late still go (their
        time is not lost on a CPU-starved box). A slot whose permit
        (the posting gate's, see sends_mark_posting) has run out is given up too, whatever its time: the broadcast may
        have been paused or cancelled since, and the answer to that may be on its way.
        """
        loop = asyncio.get_running_loop()
        limit = asyncio.Semaphore(settings.DELIVERY_MAX_IN_FLIGHT)
        log = self.log

        def done(task: asyncio.Task) -> None:
            in_flight.discard(task)
            limit.release()

        while not halt.is_set() and self.account_error is None:
            late: list[Claimed] = []
            while schedule and self.account_error is None and not halt.is_set():
                slot, send, permit = schedule[0]
                now = time.monotonic()
                if now - slot > log.late_tolerance(now) or now >= permit:
                    schedule.popleft()
                    late.append(send)
                    continue
                if slot > now + 0.0005:
                    break
                if log.full(now):
                    break
                if limit.locked():
                    await limit.acquire()
                    if time.monotonic() >= permit:  # waited for a free place past the permit: not this time
                        limit.release()
                        continue
                else:
                    await limit.acquire()
                schedule.popleft()
                fired = time.monotonic()
                log.record(fired, slot=slot)
                second = int(fired + self.wall_offset)
                self.post_counts[second] = self.post_counts.get(second, 0) + 1
                task = loop.create_task(self._post(send))
                in_flight.add(task)
                task.add_done_callback(done)
            if late:
                self.report.late += len(late)
                self.queue.extendleft(reversed(late))
                for send in late:
                    self._release_number(send)
            if schedule:
                head = max(schedule[0][0], log.free_at())
                await asyncio.sleep(max(0.0, min(head - time.monotonic(), MAX_BOOKKEEPING_SLEEP_SECONDS)))
            else:
                planned.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(planned.wait(), MAX_BOOKKEEPING_SLEEP_SECONDS)

    def _rate_push(self) -> None:
        """Hand the POSTs counted per second to the DB thread, which adds them in Redis (off the loop)."""
        if self.post_counts:
            counts, self.post_counts = self.post_counts, {}
            with contextlib.suppress(RuntimeError):  # the runtime's executor is shut down: the counts are lost
                self.runtime.db.submit(channel_posts_add, channel_id=self.channel.id, counts=counts)

    def _release_number(self, send: Claimed) -> None:
        pacing.number_release(channel_id=self.channel.id, number=send.to, token=str(send.id))

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

    def _plan_in_db(self, batch: list[Claimed]) -> _Planned:
        """The planning step's database and Redis work, in ONE hop to the DB thread (the loop never waits on a
        Redis call, which on a shared loop made the other channels' slots late): mark the batch posting (the
        posting gate), pass what was marked through the admission gates (delivery/gates/), reserve
        slots for what they admitted and hold those numbers. Nothing here touches the run's state: the loop applies
        the result (see _plan). Raises when the database or Redis is away; the caller hands the whole batch back
        (every gate is idempotent per send)."""
        marked_at, marked, closed = sends_mark_posting(broadcast_id=self.broadcast.id, ids=[s.id for s in batch])
        planned = _Planned(marked_at=marked_at, closed=closed)
        if closed is not None:
            return planned
        # A send no longer PENDING (final meanwhile) is not ours to post or record.
        batch = [s for s in batch if s.id in marked]
        if batch and chain.GATES:
            batch_facts = facts.batch_facts(self.gate_context, batch)
            ctx = dataclasses.replace(self.gate_context, now=timezone.now(), facts=batch_facts)
            planned.verdict = admission.sends_admit(ctx, batch, chain.GATES)
            batch = planned.verdict.ready
            if planned.verdict.pause is not None:
                return planned
        planned.grant = limiter.channel_reserve(
            channel_id=self.channel.id, max_mps=self.channel.max_mps, want=len(batch)
        )
        planned.use, planned.rest = batch[: planned.grant.count], batch[planned.grant.count :]
        if planned.use:
            planned.waits = limiter.numbers_claim(
                channel_id=self.channel.id,
                numbers=[s.to for s in planned.use],
                hold_seconds=self.hold,
                tokens=[str(s.id) for s in planned.use],
            )
        return planned

    async def _plan(self, schedule: deque) -> float:
        """Reserve the next slots and give them to queued sends whose number is free; returns when to plan next.
        A gate's failures are recorded without a POST, its waits handed back with the next outcome write, and its
        pause stops the run (the sends it did not admit go back to the queue)."""
        batch = [self.queue.popleft() for _ in range(min(self.batch, len(self.queue)))]
        try:
            planned = await self.run_in_db(functools.partial(self._plan_in_db, batch))
        except (db.Error, RedisError):
            # Database or Redis away for a moment: nothing is sent unmarked or unpaced; try again shortly.
            logger.warning("delivery: cannot mark or pace sends; retrying in %.1f s", CHECK_INTERVAL_SECONDS)
            self.queue.extendleft(reversed(batch))
            return time.monotonic() + CHECK_INTERVAL_SECONDS
        if planned.closed is not None:
            self.queue.extendleft(reversed(batch))
            self.gate_closed = planned.closed
            return time.monotonic() + CHECK_INTERVAL_SECONDS
        verdict = planned.verdict
        if verdict is not None:
            now = timezone.now()
            self.results += [(send, result, now) for send, result in verdict.failed]
            self.deferred += verdict.deferred
            if verdict.returned:
                self.queue.extendleft(reversed(verdict.returned))
            if verdict.pause is not None:
                if self.gate_pause is None:
                    self.gate_pause = verdict.pause
                return time.monotonic() + CHECK_INTERVAL_SECONDS
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
        schedule.extend((slot, send, permit) for slot, send in zip(grant.slot_times(), ready, strict=False))
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
