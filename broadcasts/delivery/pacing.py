"""Pacing: how fast the pump lets POSTs out on a channel, over the shared limiter (limiter.py).

The channel's GCRA schedule in Redis spaces POSTs evenly for every process; ``PostLog`` is each pump's own guard
of the cap for when POSTs do not leave or arrive at their slots; a number is held ``number_hold_seconds`` around
each POST (same number, same channel: once per 6 s) and given back early when Meta certainly took nothing.
"""

from __future__ import annotations

import math
import time
from collections import deque

from django.conf import settings
from redis.exceptions import RedisError

from broadcasts.delivery import limiter

# A slot missed by more than this is given up and its send re-planned, so a stalled process does not drift far
# into slots another process may hold (one process never fires two POSTs closer than one interval anyway).
LATE_TOLERANCE_SECONDS = 0.025
# ... unless the pump is its channel's only one (DELIVERY_CHANNEL_PARALLELISM = 1) and its PostLog has a full
# second of the channel's POSTs: then the log alone bounds every second, and a slot up to this late still goes
# (on a CPU-starved box, ~11 % of bench (e)'s slots were late by 25-250 ms and their time was lost).
LATE_FIRE_SECONDS = 0.25
# A POST whose task starts this much after its slot fired is counted in the PostLog from when it left.
DEPARTURE_SLACK_SECONDS = 0.002


def plan_batch(*, max_mps: int) -> int:
    """Sends planned (slots reserved) at a time: what the channel's rate fills in one reservation horizon."""
    rate = limiter.effective_rate(max_mps)
    return max(1, int(rate * limiter.HORIZON_SECONDS) + 1)


def number_hold_seconds() -> float:
    """How long a number is held for one POST: the same-number spacing plus the slot look-ahead."""
    return settings.DELIVERY_SAME_NUMBER_SECONDS + 0.5


def number_release(*, channel_id: str, number: str, token: str) -> None:
    """Give the number back early (an error answer, or a slot not fired); with Redis away its hold expires by
    itself within number_hold_seconds."""
    try:
        limiter.numbers_release(channel_id=channel_id, number=number, token=token)
    except RedisError:
        pass


class PostLog:
    """One pump's POSTs on its channel over the last second, and how late they have lately been.

    The GCRA schedule spaces POSTs evenly; this guards the cap when they do not leave or arrive on time. A late
    loop fires its due slots together, and the stall that made it late (CPU contention) delays POSTs on the way
    to Meta as well, so what arrives there bunched can pack more than the schedule's rate into one second. The
    log lets at most ``budget()`` POSTs out in any second: the cap less a fixed margin (DELIVERY_WINDOW_MARGIN),
    less what may arrive bunched, rate x lag. The lag is the worst recent lateness of a slot or inflation of an
    answer's time over the quickest one, held LAG_HOLD_SECONDS, then decaying with a half-life of
    LAG_HALF_LIFE_SECONDS. Measured on bench (b), four pumps on two cores: a fixed margin alone let ~1 run in 5
    put 1,001-1,014 into one second.
    """

    LAG_HALF_LIFE_SECONDS = 1.0
    # A lag is kept whole this long before it decays: a stall at Meta's end (or the sandbox's) timestamps what
    # queued meanwhile at once, and the second after it must make room for that burst, all of that second.
    LAG_HOLD_SECONDS = 1.2
    # A late slot says at most this much about bunching on the way (the log itself saw when it left) ...
    MAX_LAG_SECONDS = 0.05
    # ... a slow answer at most this much (a timeout, no more): the far end stalled for that long (bench (e) on the
    # loaded 2-core box: the sandbox silent 64-141 ms, then what queued meanwhile timestamped at once), and the
    # second after it must hold that burst and still stay under the cap.
    MAX_ANSWER_LAG_SECONDS = 0.15

    def __init__(self, *, max_mps: int):
        self.cap_set(max_mps)
        self.times: deque[float] = deque()
        self.lag = 0.0
        self.lag_at = time.monotonic()
        self.peak_at = self.lag_at
        self.started = self.lag_at
        self.quickest = math.inf
        # Until when the log itself held POSTs back: that wait is not the loop's lateness.
        self.held_until = 0.0
        self.sole_pump = settings.DELIVERY_CHANNEL_PARALLELISM == 1

    def cap_set(self, max_mps: int) -> None:
        """The channel's cap (changed in the admin while the pump runs: the next second's budget follows it)."""
        self.max_mps = max_mps
        self.base = limiter.window_budget(max_mps)
        self.rate = limiter.effective_rate(max_mps)

    def budget(self) -> int:
        return max(1, self.base - math.floor(self.rate * self.lag))

    def full(self, now: float) -> bool:
        while self.times and self.times[0] <= now - 1.0:
            self.times.popleft()
        if self.lag:
            held = self.peak_at + self.LAG_HOLD_SECONDS
            if now > held:
                self.lag *= 0.5 ** ((now - max(self.lag_at, held)) / self.LAG_HALF_LIFE_SECONDS)
        self.lag_at = now
        if len(self.times) < self.budget():
            return False
        self.held_until = self.free_at()
        return True

    def record(self, at: float, *, slot: float) -> None:
        """A POST due at ``slot`` left at ``at``."""
        self.times.append(at)
        self._lagged(at - max(slot, self.held_until), now=at, most=self.MAX_LAG_SECONDS)

    def departed(self, fired: float, at: float) -> None:
        """The POST recorded as fired at ``fired`` left only at ``at`` (its task waited for a busy loop): it counts
        in the window from when it left, so the second after a stall makes room for what the stall bunched."""
        if at - fired < DEPARTURE_SLACK_SECONDS:
            return
        times = self.times
        for position in range(len(times) - 1, -1, -1):  # from the newest: a delayed POST is a recent one
            if times[position] == fired:
                del times[position]
                break
            if times[position] < fired:
                return  # not in the log any more (the window has moved past it)
        else:
            return
        position = len(times)
        while position and times[position - 1] > at:
            position -= 1
        times.insert(position, at)
        self._lagged(at - fired, now=at, most=self.MAX_LAG_SECONDS)

    def answered(self, seconds: float) -> None:
        """A POST was answered in ``seconds``: time above the quickest answer so far was spent queued somewhere
        on the way (this machine's CPU, the network, Meta's front), where POSTs bunch as well."""
        self.quickest = min(self.quickest, seconds)
        self._lagged(seconds - self.quickest, now=time.monotonic(), most=self.MAX_ANSWER_LAG_SECONDS)

    def _lagged(self, seconds: float, *, now: float, most: float) -> None:
        seconds = min(seconds, most)
        if seconds >= self.lag and seconds > 0:
            self.lag = seconds
            self.peak_at = self.lag_at = now

    def late_tolerance(self, now: float) -> float:
        """How late a slot may still be fired: long once this log has seen a full second of a channel it alone
        posts on (it then bounds every second itself), else LATE_TOLERANCE_SECONDS."""
        if self.sole_pump and now - self.started >= 1.0:
            return LATE_FIRE_SECONDS
        return LATE_TOLERANCE_SECONDS

    def free_at(self) -> float:
        """When the next POST may go as far as the log is concerned."""
        over = len(self.times) - self.budget()
        return self.times[over] + 1.0 if over >= 0 else 0.0
