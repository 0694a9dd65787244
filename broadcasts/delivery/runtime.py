"""The per-thread asyncio runtime of the pump: one event loop (uvloop), one pooled Graph client and one
database thread per task-running thread, and the settings that keep that loop punctual while a pump runs."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import uvloop
from django.conf import settings
from django.db import close_old_connections

from whatsapp.client import GraphClient

T = TypeVar("T")
logger = logging.getLogger(__name__)

# While a pump runs, a thread holding the GIL (the DB thread building an UPDATE) hands it over this often, so a
# slot waits at most ~1 ms for it, not Python's default 5 ms.
PUMP_SWITCH_INTERVAL_SECONDS = 0.001


class Runtime:
    """One event loop, one pooled Graph client and one database thread per task-running thread (made after fork)."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        # uvloop: asyncio's API at a lower CPU cost per callback and per socket event.
        self.loop = uvloop.new_event_loop()
        self.client: GraphClient | None = None
        self.client_key: tuple | None = None
        # The places for POSTs in flight, shared by every run of every pump on this loop and as many as the
        # client's connections: a POST takes its place before its slot is taken, so it never waits in the
        # connection pool after it (a queue there drains all at once when the answers speed up, e.g. a slow Meta
        # turning to quick 5xx, and that burst would pass the channel's cap).
        self.post_places: asyncio.Semaphore | None = None
        # Database work off the event loop, so POSTs keep their slots while an UPDATE runs.
        self.db = ThreadPoolExecutor(max_workers=1, thread_name_prefix="delivery-db")
        # More such threads ("lanes", one database connection each) for the channel pumps a host serves beside the
        # first and for the host's own look-ups: one channel's outcome write or claim then rarely makes another
        # channel's posting-gate mark wait (one shared thread cost the busy channels of bench (e) ~40 % of rate).
        # At most DELIVERY_PUMP_DB_LANES of them; past that, pumps share the least used lane. So a worker process
        # holds at most 2 + DELIVERY_PUMP_DB_LANES database connections (task thread, this thread, the lanes).
        self.lanes: dict[ThreadPoolExecutor, int] = {}

    def lane_take(self) -> ThreadPoolExecutor:
        """A database thread for one pump: an unused lane, a new one while fewer than DELIVERY_PUMP_DB_LANES
        exist, else the least used (the pumps sharing it take turns; each is still on its own loop task)."""
        free = [lane for lane, users in self.lanes.items() if users == 0]
        if free:
            lane = free[0]
        elif len(self.lanes) < settings.DELIVERY_PUMP_DB_LANES:
            lane = ThreadPoolExecutor(max_workers=1, thread_name_prefix="delivery-db-lane")
            self.lanes[lane] = 0
        elif self.lanes:
            lane = min(self.lanes, key=self.lanes.__getitem__)
        else:
            return self.db  # DELIVERY_PUMP_DB_LANES = 0: every pump on the runtime's thread
        self.lanes[lane] += 1
        return lane

    def lane_give_back(self, lane: ThreadPoolExecutor) -> None:
        if lane in self.lanes and self.lanes[lane] > 0:
            self.lanes[lane] -= 1

    def graph_client(self) -> GraphClient:
        key = (
            settings.WHATSAPP_GRAPH_URL,
            settings.DELIVERY_CONNECT_TIMEOUT_SECONDS,
            settings.DELIVERY_READ_TIMEOUT_SECONDS,
            settings.DELIVERY_MAX_IN_FLIGHT,
        )
        if self.client is None or self.client.closed or key != self.client_key:
            if self.client is not None and not self.client.closed:
                self.loop.run_until_complete(self.client.close())

            async def make() -> GraphClient:
                return GraphClient(base_url=key[0], connect_timeout=key[1], read_timeout=key[2], max_connections=key[3])

            self.client = self.loop.run_until_complete(make())
            self.client_key = key
            self.post_places = asyncio.Semaphore(key[3])
        return self.client

    def close(self) -> None:
        """Close the Graph client's session (its pooled connections), the database threads and the loop: a worker
        process that exits leaves no unclosed connector behind. The loop must not be running."""
        if self.client is not None and not self.client.closed and not self.loop.is_closed():
            self.loop.run_until_complete(self.client.close())
        self.client = None
        for executor in (self.db, *self.lanes):
            executor.shutdown(wait=False, cancel_futures=True)
        if not self.loop.is_closed():
            self.loop.close()


# One runtime per thread that runs tasks: a prefork child has one; a thread pool runs several tasks at once, and an
# event loop cannot run twice. The pid check drops what a forked child inherited from its parent.
_runtimes = threading.local()
# Every runtime this process made (discarded ones too), for runtimes_close at the process's exit.
_made: list[Runtime] = []
_made_lock = threading.Lock()


def runtime_get() -> Runtime:
    """This thread's runtime, made on first use (and again in a forked child)."""
    runtime = getattr(_runtimes, "runtime", None)
    if runtime is None or runtime.pid != os.getpid():
        runtime = _runtimes.runtime = Runtime()
        with _made_lock:
            _made.append(runtime)
    return runtime


def runtimes_close() -> None:
    """Close every runtime this process made (the worker process is shutting down: no task runs any more)."""
    with _made_lock:
        mine = [runtime for runtime in _made if runtime.pid == os.getpid()]
        _made.clear()
    for runtime in mine:
        try:
            runtime.close()
        except Exception:  # noqa: BLE001 - a process on its way out: close the others still
            logger.debug("delivery runtime: closing failed", exc_info=True)
    if mine:
        logger.info("delivery: closed %d runtime(s) (HTTP session, loop) on shutdown", len(mine))


def runtime_discard() -> None:
    """Start afresh next time (a run stopped mid-way: POSTs may still be pending on the loop)."""
    _runtimes.runtime = None


def in_db_thread(fn: Callable[[], T]) -> Callable[[], T]:
    """``fn`` as the runtime's database thread must run it: on a usable connection."""

    def run() -> T:
        close_old_connections()
        return fn()

    return run


@contextlib.contextmanager
def steady_loop():
    """Keep the pump's event loop punctual: the objects alive before it (Django, the app) are moved out of the
    cyclic collector's reach, so no full collection stalls the loop for tens of ms between two slots, and the
    DB thread hands the GIL back every ~1 ms. Measured with bench-delivery (a): p99 from a POST's slot to its
    arrival at the sandbox 13 ms -> 2 ms."""
    switch = sys.getswitchinterval()
    gc.freeze()
    sys.setswitchinterval(PUMP_SWITCH_INTERVAL_SECONDS)
    try:
        yield
    finally:
        sys.setswitchinterval(switch)
        gc.unfreeze()
