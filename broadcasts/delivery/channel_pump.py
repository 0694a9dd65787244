"""One channel's pump inside a pump host (pump.PumpHost): a BroadcastRun per broadcast, one after another on the
host's loop, with a priority lane beside them (lanes.py: AUTHENTICATION and UTILITY broadcasts start at once and
reserve their slots before MARKETING runs plan more), then the wrap-up: the channel's running place given back, its
broadcasts finished (lifecycle.broadcast_finalize) or woken.

``task_awaited`` is how the host and the pump wait for their tasks in order without one bug stranding the rest.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from concurrent.futures import ThreadPoolExecutor

from celery.exceptions import SoftTimeLimitExceeded
from django import db
from django.conf import settings
from django.utils import timezone
from kombu.exceptions import KombuError
from redis.exceptions import RedisError

from broadcasts import lifecycle
from broadcasts.delivery import limiter
from broadcasts.delivery.claims import Claimed, channel_claim_next, channel_small_next
from broadcasts.delivery.dispatch import broadcast_wake, channel_others_dispatch
from broadcasts.delivery.lanes import is_priority
from broadcasts.delivery.pacing import PostLog
from broadcasts.delivery.run import REFILL_STOP_SECONDS, BroadcastRun
from broadcasts.delivery.run_outcomes import RunReport
from broadcasts.delivery.runtime import Runtime, in_db_thread
from broadcasts.models import Broadcast, SendStatus

logger = logging.getLogger(__name__)

# A lane run claims over the whole of its broadcast (sends_claim's id range).
ALL_IDS = 2**63 - 1


async def task_awaited(task: asyncio.Task, errors: list[BaseException]) -> None:
    """Wait for one pump's (or run's) task; its bug is kept in ``errors`` rather than raised at once, so that one
    failing pump does not strand the others' sends unrecorded (a time limit is raised at once)."""
    try:
        await task
    except SoftTimeLimitExceeded:
        raise
    except Exception as exc:
        errors.append(exc)


class ChannelPump:
    """One channel's pump inside a host: a BroadcastRun per broadcast, one after another on the host's loop.

    When a broadcast has nothing left to claim and its last slots are reserved, the channel's next running
    broadcast with due sends starts here at once (``follow``): its slots follow on the same GCRA schedule without a
    gap, from the same warm connections, under the same one-second log (a hand-over to another process would
    leave the channel idle while that process woke up, then start it on cold connections). Every run stops at the
    host's deadline; what it did not post goes back and is woken. When the pump stops, its channel's place is
    given back at once (another host may take the channel on) and its broadcasts are finished or woken.

    Lanes (lanes.py): a non-MARKETING broadcast the host finds due on the channel starts a run beside the others at
    once (``add_lane``); while such a run has sends waiting for slots, the MARKETING runs plan none
    (``priority_waiting``), so its slots come right after those already reserved, within the same cap.
    """

    def __init__(
        self,
        *,
        runtime: Runtime,
        deadline: float,
        give_up_at: float,
        db_thread: ThreadPoolExecutor,
        channel_id: str,
        holder: str,
        max_mps: int,
        follow: bool = True,
    ):
        self.runtime = runtime
        self.channel_id = channel_id
        # The channel's running place this pump holds (limiter.channel_slot_acquire), given back in wrap_up.
        self.holder = holder
        self.max_mps = max_mps
        self.follow = follow
        # The host's posting deadline and give-up time (time.monotonic()), shared by all its pumps.
        self.deadline = deadline
        self.give_up_at = give_up_at
        # The database thread every run of this pump uses, in order (see pump.PumpHost.pump_new).
        self.db_thread = db_thread
        self.log = PostLog(max_mps=max_mps)
        self.runs: list[BroadcastRun] = []
        # The runs of non-MARKETING broadcasts still going: MARKETING runs yield planning to them.
        self.priority_runs: list[BroadcastRun] = []
        self.tasks: list[asyncio.Task] = []
        self.reports: list[RunReport] = []
        self.ended = False
        self.wrapped = False

    def add_run(
        self, *, broadcast: Broadcast, sends: list[Claimed], first_id: int, last_id: int, follow: bool | None = None
    ) -> BroadcastRun:
        run = BroadcastRun(
            broadcast=broadcast,
            sends=sends,
            runtime=self.runtime,
            first_id=first_id,
            last_id=last_id,
            deadline=self.deadline,
            give_up_at=self.give_up_at,
            log=self.log,
            db_thread=self.db_thread,
        )
        if self.follow if follow is None else follow:
            run.on_exhausted = self._continue
        elif follow is None:
            # A small job's pump (no room on its host for big work) still goes on with the channel's next small
            # work: one-recipient broadcasts once a second on one channel are then served one after another by the
            # pump already there, not each by a new pump a host takes on after the last one gave its place back.
            run.on_exhausted = functools.partial(self._continue, small=True)
        if is_priority(broadcast):
            self.priority_runs.append(run)
        else:
            run.yield_to = self.priority_waiting
        self.runs.append(run)
        return run

    def serves(self) -> list[str]:
        """The broadcasts this pump's runs still serve."""
        return [run.broadcast.id for run in self.runs if not run.finished]

    def add_lane(self, *, broadcast: Broadcast) -> bool:
        """Start a run for a priority broadcast beside the pump's current ones (its first claim is its own first
        step); False when the pump has ended or its turn is nearly over (the broadcast's chunk task and wakes
        take it on)."""
        if self.ended or time.monotonic() >= self.deadline - REFILL_STOP_SECONDS:
            return False
        run = self.add_run(broadcast=broadcast, sends=[], first_id=0, last_id=ALL_IDS, follow=False)
        self.tasks.append(asyncio.get_running_loop().create_task(self._drive(run)))
        logger.info("delivery: channel %s starts broadcast %s in its priority lane", self.channel_id, broadcast.id)
        return True

    def priority_waiting(self) -> bool:
        """True while a priority run has sends that want slots (MARKETING runs then plan none); cheap, asked at
        every planning look of a MARKETING run."""
        if not self.priority_runs:
            return False
        self.priority_runs = [run for run in self.priority_runs if not run.finished]
        return any(run.wants_priority() for run in self.priority_runs)

    async def serve(self, first: BroadcastRun) -> None:
        """Run the pump, then wrap it up (place back, broadcasts finished or woken); an exception that is not a
        bug of one run (time limit, cancellation) leaves the wrap-up to send_chunk_deliver."""
        try:
            await self.run(first)
        except SoftTimeLimitExceeded:
            raise
        except Exception:
            self.ended = True
            await self.wrap_up()
            raise
        self.ended = True
        await self.wrap_up()

    async def run(self, first: BroadcastRun) -> None:
        self.tasks.append(asyncio.get_running_loop().create_task(self._drive(first)))
        errors = []
        # Runs are added while earlier ones run: wait for each, in order, including those added meanwhile.
        index = 0
        while index < len(self.tasks):
            await task_awaited(self.tasks[index], errors)
            index += 1
        if errors:
            raise errors[0]

    async def _drive(self, run: BroadcastRun) -> None:
        try:
            await run.run()
        finally:
            await run.run_in_db(run.finish)

    def _continue(self, *, small: bool = False) -> None:
        if time.monotonic() < self.deadline - REFILL_STOP_SECONDS:
            self.tasks.append(asyncio.get_running_loop().create_task(self._next(small=small)))

    async def _next(self, *, small: bool = False) -> None:
        find = (
            functools.partial(channel_small_next, channel_id=self.channel_id, at_most=settings.DELIVERY_PUMP_SMALL_WORK)
            if small
            else functools.partial(channel_claim_next, channel_id=self.channel_id)
        )
        try:
            found = await self.runtime.loop.run_in_executor(self.db_thread, in_db_thread(find))
        except db.Error:
            return  # the broadcasts' own chunk tasks and wakes take them on
        if found is not None:
            broadcast, sends, first_id, last_id = found
            await self._drive(self.add_run(broadcast=broadcast, sends=sends, first_id=first_id, last_id=last_id))

    async def wrap_up(self) -> None:
        """Give the channel's place back, then finish or wake its broadcasts (DB thread)."""
        self.wrapped = True
        limiter.channel_slot_release(channel_id=self.channel_id, holder=self.holder)
        self.reports = [_report(run) for run in self.runs]
        try:
            await self.runtime.loop.run_in_executor(self.db_thread, in_db_thread(self._after))
        finally:
            self.runtime.lane_give_back(self.db_thread)

    def wrap_up_now(self) -> None:
        """The same, blocking, after the loop stopped on an exception: the runs' last outcomes first."""
        self.wrapped = True
        self.ended = True
        try:
            for run in self.runs:
                self.db_thread.submit(in_db_thread(run.finish)).result()
        finally:
            limiter.channel_slot_release(channel_id=self.channel_id, holder=self.holder)
        self.reports = [_report(run) for run in self.runs]
        self.db_thread.submit(in_db_thread(self._after)).result()

    def _after(self) -> None:
        try:
            for run, run_report in zip(self.runs, self.reports, strict=True):
                _after_run(broadcast_id=run.broadcast.id, report=run_report)
            # Broadcasts this pump did not reach (it stopped at its deadline) are woken now, not at their next retry.
            if self.runs:
                channel_others_dispatch(broadcast_id=self.runs[-1].broadcast.id, channel_id=self.channel_id)
        except (db.Error, RedisError, KombuError) as exc:
            # Every outcome is written; only the wake-ups are lost, and the sweeper finds that work from the rows.
            logger.warning("delivery: could not wake the next work after a chunk (%s); the sweeper will", exc)


def _report(run: BroadcastRun) -> RunReport:
    report = run.report
    report.broadcast_id = run.broadcast.id
    report.stop = run.stop
    report.rows = run.rows_written
    wakes = []
    for row in run.rows_written:
        if row.status == SendStatus.SENT:
            report.sent += 1
        elif row.status == SendStatus.FAILED:
            report.failed += 1
        elif row.status == SendStatus.CANCELLED:
            report.cancelled += 1
        elif row.status == SendStatus.PENDING and row.next_attempt_at is not None:
            wakes.append(row.next_attempt_at)
            if row.attempts_delta == 0:
                report.retried += 1
        report.unknown += row.unknown_inc
    if wakes:
        report.wake_at = min(wakes)
    return report


def _after_run(*, broadcast_id: str, report: RunReport) -> None:
    """Finish the broadcast when nothing is pending; otherwise make sure later work gets woken."""
    if report.stop == "deadline" and report.released:
        broadcast_wake(broadcast_id=broadcast_id, at=timezone.now())
    elif report.wake_at is not None:
        broadcast_wake(broadcast_id=broadcast_id, at=report.wake_at)
    if report.stop in (None, "deadline"):
        lifecycle.broadcast_finalize(broadcast_id=broadcast_id)
