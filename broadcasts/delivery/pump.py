"""The chunk task's work: take one of the channel's running places, claim the chunk's sends (its id range) and
pump them out, then go on with the channel's other running broadcasts in the same run (``ChannelPump``).

``send_chunk_deliver`` is what broadcasts/tasks.py's ``broadcasts.send_chunk`` calls. After the pump stops it
finishes each broadcast with nothing pending (lifecycle.broadcast_finalize) and wakes what is left.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time

from celery.exceptions import SoftTimeLimitExceeded
from django import db
from django.conf import settings
from django.utils import timezone
from kombu.exceptions import KombuError
from redis.exceptions import RedisError

from broadcasts import lifecycle
from broadcasts.delivery import limiter
from broadcasts.delivery.claims import Claimed, channel_claim_next, claim_size, lease_seconds, sends_claim
from broadcasts.delivery.dispatch import broadcast_wake, channel_others_dispatch
from broadcasts.delivery.pacing import PostLog
from broadcasts.delivery.run import REFILL_STOP_SECONDS, BroadcastRun, RunReport
from broadcasts.delivery.runtime import Runtime, in_db_thread, runtime_discard, runtime_get, steady_loop
from broadcasts.models import Broadcast, BroadcastStatus, SendStatus
from broadcasts.queue import chunk_time_limits

logger = logging.getLogger(__name__)

# The pump stops taking new slots after this share of its lease, leaving time for the last answers (read
# timeout) and the final UPDATE before the task's time limit (lease - 5 s) and the lease itself.
POSTING_SHARE_OF_LEASE = 1 / 3
# A run gives up retrying this long before the chunk task's soft time limit (its outcomes then live in the Redis
# journal).
GIVE_UP_MARGIN_SECONDS = 1.0


def send_chunk_deliver(*, broadcast_id: str, first_id: int, last_id: int) -> list[RunReport]:
    """Claim and post one chunk of a broadcast's sends (ids first_id..last_id), then go on with the channel's
    other running broadcasts in the same run (see ChannelPump); safe to run twice. One report per broadcast
    served (a lone report with ``channel_busy`` when the channel already had its pumps)."""
    broadcast = Broadcast.objects.select_related("channel", "template").filter(id=broadcast_id).first()
    report = RunReport(broadcast_id=broadcast_id)
    if broadcast is None:
        return [report]
    if broadcast.status == BroadcastStatus.CANCELLED:
        report.cancelled = lifecycle.sends_cancel_unleased(broadcast_id=broadcast_id)
        return [report]
    if broadcast.status != BroadcastStatus.IN_PROGRESS:
        return [report]
    channel_id = broadcast.channel_id
    holder = limiter.pid_holder()
    try:
        acquired = limiter.channel_slot_acquire(
            channel_id=channel_id,
            holder=holder,
            limit=settings.DELIVERY_CHANNEL_PARALLELISM,
            hold_seconds=lease_seconds(),
        )
    except RedisError:
        # Redis away: no place, no pacing, nothing to do; the sweeper dispatches the broadcast again once it is back.
        report.stop = "redis_down"
        return [report]
    if not acquired:
        report.channel_busy = True
        return [report]
    pump: ChannelPump | None = None
    try:
        sends = sends_claim(
            broadcast_id=broadcast_id,
            first_id=first_id,
            last_id=last_id,
            now=timezone.now(),
            limit=claim_size(max_mps=broadcast.channel.max_mps),
        )
        report.claimed = len(sends)
        if not sends:
            return [report]
        runtime = runtime_get()
        pump = ChannelPump(runtime=runtime, channel_id=channel_id)
        first = pump.add_run(broadcast=broadcast, sends=sends, first_id=first_id, last_id=last_id)
        try:
            with steady_loop():
                runtime.loop.run_until_complete(pump.run(first))
        except BaseException:
            # Time limit or bug mid-run: POSTs may still be pending on the loop; start afresh next time (their
            # sends keep lease and posting marker, so the sweeper counts them as unknown outcomes).
            runtime_discard()
            raise
        finally:
            # The DB thread owns the connection that wrote the outcomes so far; finish there too.
            for run in pump.runs:
                runtime.db.submit(in_db_thread(run.finish)).result()
    finally:
        limiter.channel_slot_release(channel_id=channel_id, holder=holder)
    reports = [_report(run) for run in pump.runs]
    try:
        for run, run_report in zip(pump.runs, reports, strict=True):
            _after_run(broadcast_id=run.broadcast.id, report=run_report)
        # Broadcasts this run did not reach (it stopped at its deadline) are woken now, not at their next retry.
        channel_others_dispatch(broadcast_id=pump.runs[-1].broadcast.id, channel_id=channel_id)
    except (db.Error, RedisError, KombuError) as exc:
        # Every outcome is written; only the wake-ups are lost, and the sweeper finds that work from the rows.
        logger.warning("delivery: could not wake the next work after a chunk (%s); the sweeper will", exc)
    return reports


class ChannelPump:
    """One chunk task's pump on a channel: a BroadcastRun per broadcast, one after another on this process's loop.

    When a broadcast has nothing left to claim and its last slots are reserved, the channel's next running
    broadcast with due sends starts here at once: its slots follow on the same GCRA schedule without a gap, from
    the same warm connections, under the same one-second log (a hand-over to another process would leave the
    channel idle while that process woke up, then start it on cold connections). Every run stops at the pump's
    deadline; what it did not post goes back and is woken.
    """

    def __init__(self, *, runtime: Runtime, channel_id: str):
        self.runtime = runtime
        self.channel_id = channel_id
        started = time.monotonic()
        self.deadline = started + lease_seconds() * POSTING_SHARE_OF_LEASE
        # Outcome writes are retried until just before the soft time limit (the leases outlive the hard one).
        self.give_up_at = started + chunk_time_limits()[0] - GIVE_UP_MARGIN_SECONDS
        self.log: PostLog | None = None
        self.runs: list[BroadcastRun] = []
        self.tasks: list[asyncio.Task] = []

    def add_run(self, *, broadcast: Broadcast, sends: list[Claimed], first_id: int, last_id: int) -> BroadcastRun:
        max_mps = broadcast.channel.max_mps
        if self.log is None:
            self.log = PostLog(max_mps=max_mps)
        run = BroadcastRun(
            broadcast=broadcast,
            sends=sends,
            runtime=self.runtime,
            first_id=first_id,
            last_id=last_id,
            deadline=self.deadline,
            give_up_at=self.give_up_at,
            log=self.log,
        )
        run.on_exhausted = self._continue
        self.runs.append(run)
        return run

    async def run(self, first: BroadcastRun) -> None:
        self.tasks.append(asyncio.get_running_loop().create_task(self._drive(first)))
        errors = []
        # Runs are added while earlier ones run: wait for each, in order, including those added meanwhile.
        index = 0
        while index < len(self.tasks):
            try:
                await self.tasks[index]
            except SoftTimeLimitExceeded:
                raise
            except Exception as exc:  # one run's bug must not strand the others' sends unrecorded
                errors.append(exc)
            index += 1
        if errors:
            raise errors[0]

    async def _drive(self, run: BroadcastRun) -> None:
        try:
            await run.run()
        finally:
            await run.run_in_db(run.finish)

    def _continue(self) -> None:
        if time.monotonic() < self.deadline - REFILL_STOP_SECONDS:
            self.tasks.append(asyncio.get_running_loop().create_task(self._next()))

    async def _next(self) -> None:
        try:
            found = await self.runtime.loop.run_in_executor(
                self.runtime.db, in_db_thread(functools.partial(channel_claim_next, channel_id=self.channel_id))
            )
        except db.Error:
            return  # the broadcasts' own chunk tasks and wakes take them on
        if found is not None:
            broadcast, sends, first_id, last_id = found
            await self._drive(self.add_run(broadcast=broadcast, sends=sends, first_id=first_id, last_id=last_id))


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
