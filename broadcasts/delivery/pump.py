"""The chunk task's work: take one of the channel's running places, claim the chunk's sends (its id range) and
pump them out, go on with the channel's other running broadcasts in the same run (channel_pump.ChannelPump), and
serve other channels that want a pump beside it on the same event loop (``PumpHost``).

``send_chunk_deliver`` is what broadcasts/tasks.py's ``broadcasts.send_chunk`` calls. This module holds the
running places: taken here (limiter.channel_slot_acquire) for the chunk's channel and for each channel the host
takes on, given back by each channel's pump as it stops (see channel_pump.py, which also finishes or wakes its
broadcasts).

Fairness (docs/rules.md): a worker process runs one task at a time, and a pump task holds it for up to a third of
the lease (20 s). With one channel per task, as many busy channels as worker processes took every process, and a
small broadcast on an idle channel waited in the queue (2.2-5.6 s measured) for one to finish. So a running pump
task is a host: every DELIVERY_PUMP_ADOPT_INTERVAL (jittered) it looks for channels that have work and no pump
(claims.channels_wanting_pump: due PENDING broadcasts too, whose dispatch may itself wait for a process), takes
the channel's running place and runs a ChannelPump for it on the same loop, with the channel's own GCRA schedule,
PostLog, number holds and posting gate. A host takes on a channel while the caps of the channels it serves sum to
less than DELIVERY_PUMP_RATE, or at any load when the channel's due work is small (DELIVERY_PUMP_SMALL_WORK), so
busy 1000 mps channels still get a process each while a one-recipient broadcast never waits behind them. A host
skips a channel it found without work (or with big work it has no room for) for a second, but only while the
channel has no newer broadcast, and asks at every look whether a channel's place is held: one-recipient broadcasts
once a second on one channel each come while the last one's pump holds the place or has just given it back, and a
skip of a whole second there made each wait out the skip (a backlog on a loaded box). A small job's pump goes on
with its channel's next small work itself (channel_pump.ChannelPump).

Lanes (lanes.py, DELIVERY_LANES): at the same interval, whatever DELIVERY_PUMP_HOSTING says, a host asks for due
AUTHENTICATION and UTILITY broadcasts on the channels it serves that none of its runs serves, and their channel's
pump starts them beside its current run (a one-time password does not wait behind a promotion on its own
channel; the chunk task of such a broadcast, on another process, finds the place held and goes back to the
queue).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
import time
from collections.abc import Callable
from typing import TypeVar

from celery.exceptions import SoftTimeLimitExceeded
from django import db
from django.conf import settings
from django.utils import timezone
from redis.exceptions import RedisError

from broadcasts import lifecycle
from broadcasts.delivery import limiter
from broadcasts.delivery.channel_pump import ChannelPump, task_awaited
from broadcasts.delivery.claims import (
    channel_due_work,
    channel_start_next,
    channels_wanting_pump,
    claim_size,
    lease_seconds,
    sends_claim,
)
from broadcasts.delivery.lanes import priority_due
from broadcasts.delivery.run import BroadcastRun
from broadcasts.delivery.run_outcomes import RunReport
from broadcasts.delivery.runtime import Runtime, in_db_thread, runtime_discard, runtime_get, steady_loop
from broadcasts.models import Broadcast, BroadcastStatus
from broadcasts.queue import chunk_time_limits

logger = logging.getLogger(__name__)
T = TypeVar("T")

# The pump stops taking new slots after this share of its lease, leaving time for the last answers (read
# timeout) and the final UPDATE before the task's time limit (lease - 5 s) and the lease itself.
POSTING_SHARE_OF_LEASE = 1 / 3
# A run gives up retrying this long before the chunk task's soft time limit (its outcomes then live in the Redis
# journal).
GIVE_UP_MARGIN_SECONDS = 1.0


def posting_seconds() -> float:
    """How long a chunk task's pumps take new slots: POSTING_SHARE_OF_LEASE of the lease, and never so long that
    the last POST's answer (connect and read timeouts) can come after the task's soft time limit. Celery raises
    that limit inside whatever code the loop runs at the moment, an HTTP client's own timeout callback included:
    a POST whose read timeout it swallowed waited for Meta's late answer instead of counting an unknown outcome."""
    soft = chunk_time_limits()[0]
    answer = settings.DELIVERY_CONNECT_TIMEOUT_SECONDS + settings.DELIVERY_READ_TIMEOUT_SECONDS
    return max(1.0, min(lease_seconds() * POSTING_SHARE_OF_LEASE, soft - answer - GIVE_UP_MARGIN_SECONDS))


# A host takes on no channel this close to its posting deadline (the run would hand its sends straight back).
ADOPT_STOP_SECONDS = 1.0
# A channel without due work (its sends wait for retries, or were just claimed), or with big work this host has no
# room for, is not counted again by this host for this long, unless a newer broadcast comes on it meanwhile (new
# work is looked at on the next look). Whether another pump holds a channel's place is asked at every look, for all
# the candidates in one Redis round trip: such a place is often a small broadcast's, given back a moment later.
BUSY_SKIP_SECONDS = 1.0
IDLE_SKIP_SECONDS = 1.0
# Big work waits this long for a free worker process before a host takes it on (see PumpHost._adopt_one).
ADOPT_GRACE_SECONDS = 0.3


def send_chunk_deliver(*, broadcast_id: str, first_id: int, last_id: int) -> list[RunReport]:
    """Claim and post one chunk of a broadcast's sends (ids first_id..last_id), go on with the channel's other
    running broadcasts, and serve other channels that want a pump meanwhile (see PumpHost); safe to run twice. One
    report per broadcast served, this chunk's first (a lone report with ``channel_busy`` when the channel already
    had its pumps)."""
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
    try:
        sends = sends_claim(
            broadcast_id=broadcast_id,
            first_id=first_id,
            last_id=last_id,
            now=timezone.now(),
            limit=claim_size(max_mps=broadcast.channel.max_mps),
        )
    except BaseException:
        limiter.channel_slot_release(channel_id=channel_id, holder=holder)
        raise
    report.claimed = len(sends)
    if not sends:
        limiter.channel_slot_release(channel_id=channel_id, holder=holder)
        return [report]
    runtime = runtime_get()
    host = PumpHost(runtime=runtime)
    pump = host.pump_new(channel_id=channel_id, holder=holder, max_mps=broadcast.channel.max_mps)
    host.add(pump, pump.add_run(broadcast=broadcast, sends=sends, first_id=first_id, last_id=last_id))
    try:
        with steady_loop():
            runtime.loop.run_until_complete(host.run())
    except BaseException:
        # Time limit or bug mid-run: POSTs may still be pending on the loop; start afresh next time (their
        # sends keep lease and posting marker, so the sweeper counts them as unknown outcomes).
        runtime_discard()
        raise
    finally:
        # Pumps the loop did not wrap up (an exception): finish them here, in the DB thread that owns the
        # connection that wrote their outcomes so far.
        for unfinished in host.pumps:
            if not unfinished.wrapped:
                unfinished.wrap_up_now()
        host.close()
    return [run_report for served in host.pumps for run_report in served.reports]


class PumpHost:
    """One chunk task's event loop serving one or more channels' pumps until its posting deadline.

    It starts with the chunk's channel and, while one of its pumps still runs, takes on other channels that have
    work and no pump (see the module's docstring), one per look. Every pump it serves shares its deadline, so the
    task still ends within its time limits; each keeps its own channel's pacing.
    """

    def __init__(self, *, runtime: Runtime):
        self.runtime = runtime
        started = time.monotonic()
        self.deadline = started + posting_seconds()
        # Outcome writes are retried until just before the soft time limit (the leases outlive the hard one).
        self.give_up_at = started + chunk_time_limits()[0] - GIVE_UP_MARGIN_SECONDS
        self.pumps: list[ChannelPump] = []
        self.tasks: list[asyncio.Task] = []
        # channel -> (until when this host does not count its work, the channel's newest broadcast then)
        self.skip_until: dict[str, tuple[float, str]] = {}
        # When this host first saw a channel want a pump (its own clock): big work waits ADOPT_GRACE_SECONDS for a
        # free process to take it from the queue.
        self.first_seen: dict[str, float] = {}
        self.lane = None
        # An operator may turn hosting off (DELIVERY_PUMP_HOSTING): then one channel per task.
        self.adopting = settings.DELIVERY_PUMP_HOSTING

    def pump_new(self, *, channel_id: str, holder: str, max_mps: int, follow: bool = True) -> ChannelPump:
        """A pump for a channel whose running place ``holder`` holds, under this host's deadline; add it with
        ``add``. The chunk's own pump uses the runtime's database thread; each one a host takes on, a lane of its
        own."""
        return ChannelPump(
            runtime=self.runtime,
            deadline=self.deadline,
            give_up_at=self.give_up_at,
            db_thread=self.runtime.db if not self.pumps else self.runtime.lane_take(),
            channel_id=channel_id,
            holder=holder,
            max_mps=max_mps,
            follow=follow,
        )

    def add(self, pump: ChannelPump, first: BroadcastRun) -> None:
        self.pumps.append(pump)
        self.tasks.append(self.runtime.loop.create_task(pump.serve(first)))

    def serving(self) -> list[ChannelPump]:
        return [pump for pump in self.pumps if not pump.ended]

    async def run(self) -> None:
        # Pumps are added while earlier ones run: wait for each, in order, including those added meanwhile.
        loop = asyncio.get_running_loop()
        watchers = [loop.create_task(self._lanes_loop())] if settings.DELIVERY_LANES else []
        if self.adopting:
            watchers.append(loop.create_task(self._adopt_loop()))
        errors: list[BaseException] = []
        index = 0
        while index < len(self.tasks) or not all(watcher.done() for watcher in watchers):
            if index == len(self.tasks):
                # Every pump is done; the watchers end at their next look (or are starting work right now).
                await asyncio.wait(watchers, timeout=0.05)
                continue
            await task_awaited(self.tasks[index], errors)
            index += 1
        for watcher in watchers:
            if not watcher.cancelled() and watcher.exception() is not None:
                errors.append(watcher.exception())
        for error in errors:
            if isinstance(error, SoftTimeLimitExceeded):
                raise error
        if errors:
            raise errors[0]

    async def in_db(self, fn: Callable[[], T]) -> T:
        """The host's own look-ups, on a database thread no pump waits on."""
        if self.lane is None:
            self.lane = self.runtime.lane_take()
        return await self.runtime.loop.run_in_executor(self.lane, in_db_thread(fn))

    def close(self) -> None:
        if self.lane is not None:
            self.runtime.lane_give_back(self.lane)
            self.lane = None

    async def _adopt_loop(self) -> None:
        interval = settings.DELIVERY_PUMP_ADOPT_INTERVAL
        while True:
            # Jittered, so the hosts of several processes look at different moments; a host that serves more
            # channels looks less often, so new big work goes to the least busy hosts first.
            serving = max(1, len(self.serving()))
            await asyncio.sleep(interval * random.uniform(0.5, 1.5) * (1 + (serving - 1) / 2))
            if not self.serving() or time.monotonic() >= self.deadline - ADOPT_STOP_SECONDS:
                return
            if len(self.serving()) >= settings.DELIVERY_PUMP_CHANNELS:
                continue
            try:
                await self._adopt_one()
            except (db.Error, RedisError) as exc:
                # Store away: the pumps already wait and retry on their own; looking again later is enough.
                logger.warning("delivery: cannot look for channels to serve (%s)", exc)
                await asyncio.sleep(interval * 4)

    async def _lanes_loop(self) -> None:
        """Every DELIVERY_PUMP_ADOPT_INTERVAL (jittered): start the due priority broadcasts of the channels this
        host serves in their pumps' lanes (lanes.py); one query for all of them."""
        interval = settings.DELIVERY_PUMP_ADOPT_INTERVAL
        while True:
            await asyncio.sleep(interval * random.uniform(0.5, 1.5))
            serving = self.serving()
            if not serving or time.monotonic() >= self.deadline - ADOPT_STOP_SECONDS:
                return
            served = [broadcast_id for pump in serving for broadcast_id in pump.serves()]
            try:
                found = await self.in_db(
                    functools.partial(priority_due, channel_ids=[pump.channel_id for pump in serving], serving=served)
                )
            except db.Error as exc:
                logger.warning("delivery: cannot look for priority broadcasts (%s)", exc)
                await asyncio.sleep(interval * 4)
                continue
            pumps = {pump.channel_id: pump for pump in self.serving()}
            for broadcast in found:
                pump = pumps.get(broadcast.channel_id)
                if pump is not None and broadcast.id not in pump.serves():
                    pump.add_lane(broadcast=broadcast)

    async def _adopt_one(self) -> bool:
        """Take on the first channel that wants a pump and may run here; True when one was.

        Small work (a few sends) is taken at once by any host. Big work only by a host whose channels' caps sum
        to less than DELIVERY_PUMP_RATE, and only once the channel has wanted a pump for ADOPT_GRACE_SECONDS: an
        idle worker process takes its chunk task from the queue within milliseconds, and should (a process of
        its own per busy channel while there are enough).
        """
        serving = self.serving()
        exclude = [pump.channel_id for pump in serving]
        candidates = await self.in_db(functools.partial(channels_wanting_pump, exclude=exclude))
        wanting = {channel_id for channel_id, _, _ in candidates}
        for channel_id in list(self.first_seen):
            if channel_id not in wanting:
                del self.first_seen[channel_id]
        now = time.monotonic()
        # A skip holds while the channel's newest broadcast is the one it was set with: a new small broadcast on a
        # channel looked at a moment ago (the last one's pump just gave its place back) is taken on at this look.
        looked = [
            (channel_id, max_mps, newest)
            for channel_id, max_mps, newest in candidates
            if (skip := self.skip_until.get(channel_id)) is None or skip[0] <= now or skip[1] != newest
        ]
        if not looked:
            return False
        taken = limiter.channels_slots_taken(channel_ids=[channel_id for channel_id, _, _ in looked])
        room = sum(pump.max_mps for pump in serving) < settings.DELIVERY_PUMP_RATE
        small = settings.DELIVERY_PUMP_SMALL_WORK
        for channel_id, max_mps, newest in looked:
            now = time.monotonic()
            seen = self.first_seen.setdefault(channel_id, now)
            if taken[channel_id] >= settings.DELIVERY_CHANNEL_PARALLELISM:
                continue  # asked again at the next look
            work = await self.in_db(functools.partial(channel_due_work, channel_id=channel_id, at_most=small))
            if work == 0:
                self.skip_until[channel_id] = (now + IDLE_SKIP_SECONDS, newest)
                continue
            big = work > small
            if big and not room:
                # For a host with room, or the channel's own chunk task on a free process.
                self.skip_until[channel_id] = (now + BUSY_SKIP_SECONDS, newest)
                continue
            if big and now - seen < ADOPT_GRACE_SECONDS:
                self.skip_until[channel_id] = (seen + ADOPT_GRACE_SECONDS, newest)
                continue
            holder = limiter.pid_holder()
            if not limiter.channel_slot_acquire(
                channel_id=channel_id,
                holder=holder,
                limit=settings.DELIVERY_CHANNEL_PARALLELISM,
                hold_seconds=lease_seconds(),
            ):
                continue  # another host took it first
            try:
                found = await self.in_db(functools.partial(channel_start_next, channel_id=channel_id))
            except BaseException:
                limiter.channel_slot_release(channel_id=channel_id, holder=holder)
                raise
            if found is None:
                limiter.channel_slot_release(channel_id=channel_id, holder=holder)
                self.skip_until[channel_id] = (now + IDLE_SKIP_SECONDS, newest)
                continue
            broadcast, sends, first_id, last_id = found
            # A small job's pump does not go on with the channel's next broadcasts here unless there is room.
            pump = self.pump_new(channel_id=channel_id, holder=holder, max_mps=max_mps, follow=room)
            self.add(pump, pump.add_run(broadcast=broadcast, sends=sends, first_id=first_id, last_id=last_id))
            logger.info("delivery: pump host serves channel %s too (%d channels)", channel_id, len(self.serving()))
            return True
        return False
