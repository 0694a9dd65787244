"""A broadcast run's outcome keeping: Meta's answers as they arrive, journaled in Redis every
JOURNAL_INTERVAL_SECONDS, written to PostgreSQL with every check of the run (outcomes.sends_record), retried while
the database is away, and the deferred sends handed back with each write.

``RunOutcomes`` is the base of run_posting.RunPosting (and so of run.BroadcastRun), which posts; it expects the
run's ``broadcast``, ``channel`` and ``give_up_at``. The POST coroutines on the loop append to ``results``; the DB
thread writes what the loop swapped out (``_take_results``): nothing is lost in between.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from django import db
from django.db import connection
from django.utils import timezone
from redis.exceptions import RedisError

from broadcasts.delivery.claims import Claimed
from broadcasts.delivery.outcomes import (
    OutcomeRow,
    cancelled_row,
    journal_drop,
    journal_put,
    outcome_row,
    sends_record,
)
from broadcasts.models import Broadcast, BroadcastStatus, SendStatus
from templates_registry.models import Channel
from whatsapp.client import SendResult

if TYPE_CHECKING:
    from collections.abc import Iterable


logger = logging.getLogger(__name__)

# Meta's answers are journaled in Redis (outcomes.journal_put) this often between outcome writes: a worker killed
# meanwhile loses at most this much of them (the sweeper writes the journal before it takes back expired leases,
# so an answered send is not taken for an unknown outcome), instead of everything since the last write.
JOURNAL_INTERVAL_SECONDS = 0.1
# Those journal writes get a thread of their own, so they never queue behind the DB thread's writes and claims
# (created on first use, in the worker process that runs the pump).
_JOURNAL_THREAD = ThreadPoolExecutor(max_workers=1, thread_name_prefix="delivery-journal")
# A failed outcome write is tried again this often until the database answers or the run's time is up.
STORE_RETRY_SECONDS = 0.25


@dataclass
class RunReport:
    """What one broadcast's run did (for logs, tests and the benchmark)."""

    broadcast_id: str = ""
    claimed: int = 0
    posted: int = 0
    sent: int = 0
    failed: int = 0
    retried: int = 0
    deferred: int = 0
    released: int = 0
    cancelled: int = 0
    unknown: int = 0
    late: int = 0
    stop: str | None = None
    channel_busy: bool = False
    wake_at: datetime | None = None
    rows: list[OutcomeRow] = field(default_factory=list, repr=False)


class RunOutcomes:
    """The outcome keeping of one run (see the module's docstring)."""

    broadcast: Broadcast
    channel: Channel
    give_up_at: float
    report: RunReport

    def _outcomes_init(self) -> None:
        self.results: list[tuple[Claimed, SendResult, datetime]] = []
        # How many of self.results are journaled already, and when next (see _journal_answers).
        self.journaled = 0
        self.next_journal = 0.0
        # (send, wait seconds, reason): handed back PENDING at the end of the run, due again after the wait.
        self.deferred: list[tuple[Claimed, float, str]] = []
        self.deferred_count = 0
        self.rows_written: list[OutcomeRow] = []
        # Rows whose write failed (tried again with the next write) and their journal entries in Redis.
        self.unwritten: list[OutcomeRow] = []
        self.journal_keys: list[str] = []
        self.journal_lock = threading.Lock()

    def _take_results(self) -> list[tuple[Claimed, SendResult, datetime]]:
        # Swapped on the loop's thread, where the POST coroutines append: nothing is lost in between.
        results, self.results = self.results, []
        self.journaled = 0
        return results

    def _journal_answers(self) -> None:
        """Hand Meta's answers that arrived since the last call to the DB thread, which journals the final ones in
        Redis (one HSET); the next successful outcome write drops the entry again (see _flush)."""
        self.next_journal = time.monotonic() + JOURNAL_INTERVAL_SECONDS
        fresh = self.results[self.journaled :]
        self.journaled = len(self.results)
        if not fresh:
            return
        with contextlib.suppress(RuntimeError):  # the interpreter is shutting down: the write follows anyway
            _JOURNAL_THREAD.submit(self._journal_put, fresh)

    def _journal_put(self, results: list[tuple[Claimed, SendResult, datetime]]) -> None:
        rows = [outcome_row(send=s, result=r, now=at) for s, r, at in results if not r.unknown]
        key = journal_put(rows, channel_id=self.channel.id)
        if key is not None:
            with self.journal_lock:
                self.journal_keys.append(key)

    def _flush(self, results: list[tuple[Claimed, SendResult, datetime]], extra: Iterable[OutcomeRow] = ()) -> str:
        """Record the given outcomes (and any whose write failed before) and read the broadcast's status (runs in
        the DB thread). When the write fails, the rows are kept for the next one and the final ones journaled in
        Redis at once (see journal_put): a known answer is never only in memory for longer than a write."""
        new = [outcome_row(send=s, result=r, now=at) for s, r, at in results]
        new += extra
        rows = self.unwritten = self.unwritten + new
        try:
            status = Broadcast.objects.filter(id=self.broadcast.id).values_list("status", flat=True).first()
            status = status or BroadcastStatus.CANCELLED
            if status == BroadcastStatus.CANCELLED:
                now = timezone.now()
                rows = [cancelled_row(row, now=now) for row in rows]
            sends_record(rows=rows, channel_id=self.channel.id)
        except (db.Error, RedisError):
            key = journal_put(new, channel_id=self.channel.id)
            if key is not None:
                with self.journal_lock:
                    self.journal_keys.append(key)
            raise
        self.unwritten = []
        self.rows_written += rows
        with self.journal_lock:
            keys, self.journal_keys = self.journal_keys, []
        journal_drop(keys)
        return status

    def _flush_retrying(
        self, results: list[tuple[Claimed, SendResult, datetime]], extra: list[OutcomeRow]
    ) -> str | None:
        """_flush until it succeeds or the run's time is up (DB thread); None when it gave up."""
        while True:
            try:
                return self._flush(results, extra)
            except (db.Error, RedisError) as exc:
                if results or extra:
                    logger.warning(
                        "delivery: last outcome write of broadcast %s failed (%s); retrying every %.2f s",
                        self.broadcast.id,
                        exc.__class__.__name__,
                        STORE_RETRY_SECONDS,
                    )
                results, extra = [], []  # now in self.unwritten
                with contextlib.suppress(Exception):
                    connection.close()  # reconnect on the next try
                if time.monotonic() + STORE_RETRY_SECONDS >= self.give_up_at:
                    logger.error(
                        "delivery: giving up writing %d outcomes of broadcast %s (%s); %d journaled in Redis",
                        len(self.unwritten),
                        self.broadcast.id,
                        exc,
                        sum(1 for r in self.unwritten if r.status in (SendStatus.SENT, SendStatus.FAILED)),
                    )
                    return None
                time.sleep(STORE_RETRY_SECONDS)

    def _take_deferred(self) -> list[OutcomeRow]:
        """The sends deferred since the last write, as rows handing them back PENDING until their wait is over (a
        gate's wait, or the number got a message on this channel < 6 s ago: spaced, not dropped, and no attempt
        counted). Written with the next outcome write, not only at the end of the run: a send waiting for the
        messaging limit is visible as such (``waiting``) and no longer leased while it waits."""
        deferred, self.deferred = self.deferred, []
        self.deferred_count += len(deferred)
        now = timezone.now()
        return [
            OutcomeRow(
                id=send.id,
                status=SendStatus.PENDING,
                attempts_delta=-1,
                next_attempt_at=now + timedelta(seconds=wait),
                posted=False,
                wait_reason=reason,
            )
            for send, wait, reason in deferred
        ]
