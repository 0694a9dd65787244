"""Loaded (PYTHONPATH) only by a worker the `clock_skew` fault restarts under libfaketime.

Debian's libfaketime, with the monotonic clock left true (FAKETIME_DONT_FAKE_MONOTONIC), makes `clock_nanosleep`
fail with EINVAL, so Python's `time.sleep` raises where no real clock skew would (kombu's reconnect loop then killed
the worker while Redis was away); with the monotonic clock faked instead, thread waits hang. So the skewed worker's
`time.sleep` waits in `select` instead: the same relative wait on the true monotonic clock, and every wall-clock
reading (time.time, datetime.now) still skewed by libfaketime.
"""

import select
import time


def _sleep(seconds: float) -> None:
    if seconds < 0:
        raise ValueError("sleep length must be non-negative")
    select.select([], [], [], seconds)


time.sleep = _sleep
