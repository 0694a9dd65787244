"""A broadcast run's posting side: fire each reserved slot on time, POST the send, take Meta's answer.

``RunPosting`` is the base of run.BroadcastRun (and is itself a run_outcomes.RunOutcomes, where the answers go).
Its ``_fire`` coroutine runs beside the run's bookkeeping coroutine (BroadcastRun.run) on the pump's event loop:
the bookkeeping puts (slot, send, permit) on ``schedule``, ``_fire`` takes them off when due, within the pump's
one-second PostLog, and starts one ``_post`` per slot; a slot that comes too late or past its permit (the posting
gate's, see claims.sends_mark_posting) goes back to the run's queue. An answer that pauses the broadcast
(PAUSING_CLASSES) is kept in ``account_error``; the bookkeeping stops the run on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque

from django.utils import timezone

from broadcasts.delivery import pacing
from broadcasts.delivery.claims import Claimed
from broadcasts.delivery.outcomes import missing_variables_result
from broadcasts.delivery.pacing import PostLog
from broadcasts.delivery.run_outcomes import RunOutcomes
from broadcasts.delivery.runtime import Runtime
from broadcasts.metrics import channel_posts_add
from broadcasts.models import Broadcast
from core.metrics import META_REQUEST_SECONDS
from whatsapp.client import SendResult, send_path
from whatsapp.errors import ErrorClass
from whatsapp.payload import MissingVariablesError, TemplateMessageBuilder, callback_reference

# Answers that pause the whole broadcast and stop the run: account-level errors, and 132015/132016 (template).
PAUSING_CLASSES = (ErrorClass.ACCOUNT, ErrorClass.TEMPLATE)

# The longest either coroutine of a run sleeps: bounds how fast it notices a stop or requeued sends.
MAX_BOOKKEEPING_SLEEP_SECONDS = 0.05


class RunPosting(RunOutcomes):
    """The posting side of one run (see the module's docstring); all state here is this run's only."""

    queue: deque[Claimed]
    runtime: Runtime

    def _posting_init(self, *, broadcast: Broadcast, log: PostLog) -> None:
        self.builder = TemplateMessageBuilder(broadcast.template, header_media=broadcast.header_media)
        self.client = self.runtime.graph_client()
        # This process's places for POSTs in flight (runtime.post_places): shared with every other run on the loop.
        self.places: asyncio.Semaphore = self.runtime.post_places  # type: ignore[assignment]
        # This process's POSTs on the channel over the last second: shared by the pump's runs.
        self.log = log
        # (slot, send, permit): the POST goes at its slot, and only before its permit ends (see sends_mark_posting).
        self.schedule: deque[tuple[float, Claimed, float]] = deque()
        # The POSTs under way.
        self.in_flight: set[asyncio.Task] = set()
        self.account_error: SendResult | None = None
        # Metrics: each POST's latency (one observe), and POSTs per wall-clock second, added to Redis every check
        # for msg_channel_sends_per_second (broadcasts/metrics.py).
        # Marketing Messages API or /messages: chosen once per run (docs/rules.md), and named in the latency's label.
        self.send_path = send_path(
            category=broadcast.template.category, marketing_messages=broadcast.channel.marketing_messages
        )
        self.latency = META_REQUEST_SECONDS.labels(broadcast.channel.id, self.send_path)
        self.wall_offset = time.time() - time.monotonic()
        self.post_counts: dict[int, int] = {}

    async def _post(self, send: Claimed, fired: float) -> None:
        # Fired at ``fired``; it leaves now (a loop busy since holds its task back, and what a stall holds back
        # leaves together): the log counts it from now.
        self.log.departed(fired, time.monotonic())
        try:
            # The send's reference rides along (biz_opaque_callback_data): its status webhooks find it even when
            # the answer to this POST is lost (docs/rules.md).
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

    async def _fire(self, halt: asyncio.Event, planned: asyncio.Event) -> None:
        """Fire every slot of ``schedule`` that is due; POSTs run concurrently on the loop. Runs until ``halt`` (the
        bookkeeping stopped) or a pausing answer; ``planned`` wakes it when new slots were scheduled.

        A slot missed by more than the log's tolerance (this process was descheduled) is given up and re-planned.
        The tolerance is short (25 ms) while the pump's PostLog has not seen a full second of the channel (a fresh
        pump after a hand-over: late slots next to the last pump's on-time ones could put more than max_mps into
        one second); after that the log bounds every second itself, and slots up to 250 ms late still go (their
        time is not lost on a CPU-starved box). A slot whose permit
        (the posting gate's, see sends_mark_posting) has run out is given up too, whatever its time: the broadcast may
        have been paused or cancelled since, and the answer to that may be on its way.
        """
        loop = asyncio.get_running_loop()
        limit = self.places
        log, schedule, in_flight = self.log, self.schedule, self.in_flight

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
                    # Waited for a free place: the slot may be late or past its permit by now, and the log full.
                    now = time.monotonic()
                    if now >= permit or now - slot > log.late_tolerance(now) or log.full(now):
                        limit.release()
                        continue
                else:
                    await limit.acquire()
                schedule.popleft()
                fired = time.monotonic()
                log.record(fired, slot=slot)
                second = int(fired + self.wall_offset)
                self.post_counts[second] = self.post_counts.get(second, 0) + 1
                task = loop.create_task(self._post(send, fired))
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
