"""No double bill after a crash (docs/rules.md, issue 11): a worker killed with SIGKILL mid-broadcast at 200 mps.

Real processes: a Celery worker subprocess posting to the sandbox over HTTP; the sandbox posting signed status
webhooks to the service (pytest-django's live server); the sweeper run from this process as beat would. The
sandbox's arrival log counts the POSTs per number.
"""

import time
from collections import Counter, defaultdict
from dataclasses import dataclass

import orjson
import pytest

from broadcasts.delivery.outcomes import JOURNAL_KEY
from broadcasts.delivery.recovery import broadcasts_sweep
from broadcasts.models import Broadcast, Send, SendStatus
from broadcasts.queue import enqueue_dispatch
from broadcasts.status_updates.unmatched import unmatched_statuses_retry
from core.redis import redis_client
from tests.broadcasts.counts_support import assert_counts_exact
from tests.delivery_support import CeleryProcess, broadcast_make, broadcast_settled, numbers
from whatsapp.payload import callback_reference

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

SECRET = "no-double-secret"
RECIPIENTS = 1000


def _sweep_until_settled(broadcast, *, timeout: float, on_sweep=None) -> None:
    """What beat does, from this process: sweep every second until the broadcast is final."""
    deadline = time.monotonic() + timeout
    while not broadcast_settled(broadcast.id):
        if time.monotonic() > deadline:
            rows = Counter(Send.objects.filter(broadcast=broadcast).values_list("status", flat=True))
            raise AssertionError(f"not settled in {timeout}s: {Broadcast.objects.get(id=broadcast.id).status} {rows}")
        broadcasts_sweep()
        unmatched_statuses_retry()
        if on_sweep is not None:
            on_sweep()
        time.sleep(1.0)


@dataclass
class Killed:
    """A broadcast whose worker was SIGKILLed mid-flight, and what the kill caught: the sends marked posting,
    those of them whose POST Meta had (answers only in the dead memory), and the sends a ``sent`` status settled
    before the worker wrote Meta's answer (that answer died with it, unless journaled)."""

    broadcast: Broadcast
    recipients: list[str]
    caught: list[tuple[int, str]]
    answered: list[tuple[int, str]]
    settled_first: set[int]


@pytest.fixture
def kill_mid_broadcast(channel, template, delivery_sandbox, worker, _session_worker, worker_env):
    """Call it once the sandbox is configured: makes a broadcast of RECIPIENTS numbers at 200 mps, starts it,
    SIGKILLs the worker (main process and pool) after 300 POSTs, and starts a new worker."""

    def kill() -> Killed:
        channel.max_mps = 200
        channel.save()
        recipients = numbers(RECIPIENTS)
        broadcast = broadcast_make(channel=channel, template=template, recipients=recipients)
        enqueue_dispatch(broadcast.id)
        delivery_sandbox.wait_for_requests(300, timeout=30)
        worker.kill_hard()
        # The kill really happened, mid-broadcast: the worker is gone and it left work behind (checked below).
        assert not worker.alive()
        caught = list(
            Send.objects.filter(broadcast=broadcast, status=SendStatus.PENDING, posting_at__isnull=False).values_list(
                "id", "to"
            )
        )
        settled_first = set(
            Send.objects.filter(broadcast=broadcast, status=SendStatus.SENT, meta_status__isnull=True).values_list(
                "id", flat=True
            )
        )
        posted = {r["to"] for r in delivery_sandbox.requests()}
        journal = redis_client().hgetall(JOURNAL_KEY)
        journaled = sum(len(orjson.loads(v)["rows"]) for v in journal.values())
        print(f"journal at the kill: {len(journal)} entries, {journaled} answers")
        _session_worker["worker"] = CeleryProcess("worker", env=worker_env, concurrency=2).start()
        assert Send.objects.filter(broadcast=broadcast, status=SendStatus.PENDING).exists(), "killed after the end"
        answered = [(i, to) for i, to in caught if to.lstrip("+") in posted]
        print(f"kill caught {len(caught)} sends marked posting, {len(answered)} of them posted")
        return Killed(broadcast, recipients, caught, answered, settled_first)

    return kill


def _posts_by_number(delivery_sandbox) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = defaultdict(list)
    for request in delivery_sandbox.requests():
        out[request["to"]].append(request)
    return out


def test_worker_killed_with_sent_statuses_arriving_posts_no_number_twice(
    delivery_sandbox, delivery_settings, kill_mid_broadcast, live_server
):
    # Given Meta's `sent` statuses (with each POST's callback data) posted to our webhook right after each accept
    delivery_settings.WHATSAPP_APP_SECRET = SECRET
    delivery_sandbox.config(
        latency_ms=50,
        webhook_url=f"{live_server.url}/v1/webhooks/whatsapp",
        app_secret=SECRET,
        sent_after_ms=0,
        delivered_after_ms=600_000,  # only the `sent` statuses within the test
        read_after_ms=600_000,
    )

    # When the worker is killed with SIGKILL mid-broadcast, then started again (the sweeper running)
    kill = kill_mid_broadcast()
    broadcast, recipients = kill.broadcast, kill.recipients
    _sweep_until_settled(broadcast, timeout=120)

    # Then every send ended SENT and NO number was posted twice
    posts = _posts_by_number(delivery_sandbox)
    assert set(posts) == {n.lstrip("+") for n in recipients}
    twice = {to: len(r) for to, r in posts.items() if len(r) > 1}
    assert twice == {}
    sends = list(Send.objects.filter(broadcast=broadcast).order_by("index"))
    assert Counter(s.status for s in sends) == {SendStatus.SENT: RECIPIENTS}
    assert Broadcast.objects.get(id=broadcast.id).status == "COMPLETED"
    assert assert_counts_exact(broadcast)[broadcast.id]["sent"] == RECIPIENTS
    # And the kill really caught answers that lived only in the dead worker's memory: their statuses settled them
    assert len(kill.answered) > 0, kill
    settled = Send.objects.filter(id__in=[i for i, _ in kill.answered])
    assert all(s.status == SendStatus.SENT and s.message_id for s in settled)
    # And every POST carried its send's reference; Meta's answer is stored with the send
    for send in sends:
        (request,) = posts[send.to.lstrip("+")]
        assert request["body"]["biz_opaque_callback_data"] == callback_reference(broadcast.id, send.index)
    unanswered = {i for i, _ in kill.caught} | kill.settled_first
    answered_by_the_worker = [s for s in sends if s.id not in unanswered]
    assert len(answered_by_the_worker) > RECIPIENTS / 2
    assert {s.meta_status for s in answered_by_the_worker} == {"accepted"}
    assert all(s.wa_id == s.to.lstrip("+") for s in answered_by_the_worker)


def test_worker_killed_without_statuses_reposts_only_after_the_grace_and_counts_each(
    delivery_sandbox, delivery_settings, kill_mid_broadcast
):
    # Given no status webhooks at all, and a grace of 3 s for unknown outcomes
    delivery_settings.DELIVERY_UNKNOWN_GRACE_SECONDS = 3.0
    delivery_sandbox.config(latency_ms=50)

    # When the worker is killed mid-broadcast and started again
    kill = kill_mid_broadcast()
    broadcast = kill.broadcast
    # (what the sweeper decided for each send it took back: when it recovered it and when it may go again)
    recovered: dict[int, tuple[float, float]] = {}

    def note_recovered() -> None:
        for send_id, updated, due in Send.objects.filter(
            broadcast=broadcast, status=SendStatus.PENDING, unknown_outcomes__gt=0, next_attempt_at__isnull=False
        ).values_list("id", "updated_at", "next_attempt_at"):
            recovered.setdefault(send_id, (updated.timestamp(), due.timestamp()))

    _sweep_until_settled(broadcast, timeout=120, on_sweep=note_recovered)

    # Then every send ended SENT; numbers were posted twice only where an unknown outcome was counted
    sends = {s.to.lstrip("+"): s for s in Send.objects.filter(broadcast=broadcast)}
    assert Counter(s.status for s in sends.values()) == {SendStatus.SENT: RECIPIENTS}
    posts = _posts_by_number(delivery_sandbox)
    twice = {to: r for to, r in posts.items() if len(r) > 1}
    assert twice, "the kill caught no answered POST: nothing was tested"
    assert len(twice) <= len(kill.caught)
    for to, requests_of in twice.items():
        send = sends[to]
        assert send.unknown_outcomes >= len(requests_of) - 1, send
        # And each re-post waited out the grace after the sweeper took the send back
        taken_back_at, due_at = recovered[send.id]
        assert due_at - taken_back_at >= 3.0 - 0.01
        assert requests_of[1]["received_at"] >= due_at - 0.05, (to, requests_of, due_at)
        # (the same callback data on both POSTs: a status of either would have found it)
        assert {r["body"]["biz_opaque_callback_data"] for r in requests_of} == {
            callback_reference(broadcast.id, send.index)
        }
    unknown = sum(s.unknown_outcomes for s in sends.values())
    print(f"numbers posted twice: {len(twice)}; unknown outcomes counted: {unknown}")
    assert sum(s.unknown_outcomes for s in sends.values()) >= sum(len(r) - 1 for r in posts.values())
    assert Broadcast.objects.get(id=broadcast.id).status == "COMPLETED"
    assert assert_counts_exact(broadcast)[broadcast.id]["sent"] == RECIPIENTS
