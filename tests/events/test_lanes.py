"""Lanes (events/lanes.py): an organization's delivery tasks share EVENTS_ORG_MAX_IN_FLIGHT worker slots, failing
endpoints of every organization share EVENTS_FAILING_MAX_IN_FLIGHT, and a task whose lane is full ends at once,
its endpoint queued again when a slot frees."""

import threading

import pytest
from django.db import connections

from events import lanes, outbox, queue, tasks
from events.models import WebhookEndpoint
from tests.delivery_support import wait_for

# The run in progress is a thread of its own, with its own database connection: the rows must be committed.
pytestmark = pytest.mark.django_db(transaction=True)


def _in_thread(endpoint_id: str) -> threading.Thread:
    def run() -> None:
        try:
            tasks.endpoint_deliver_task(endpoint_id)
        finally:
            connections.close_all()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_a_full_lane_leaves_the_endpoint_waiting_and_hands_the_slot_on(org, other_org, endpoint_for, monkeypatch):
    first, _ = endpoint_for(org, "http://127.0.0.1:9/a")
    second, _ = endpoint_for(org, "http://127.0.0.1:9/b")
    theirs, _ = endpoint_for(other_org, "http://127.0.0.1:9/c")
    woken: list[str] = []
    monkeypatch.setattr(queue, "delivery_enqueue", woken.append)
    # Given a run of the organization's first endpoint in progress (it holds the organization's one slot)
    running, release = threading.Event(), threading.Event()
    ran: list[str] = []

    def deliver(*, endpoint_id):
        ran.append(endpoint_id)
        if endpoint_id == first.id:
            running.set()
            release.wait(10)
        return {"delivered": 0, "failed_attempts": 0}

    monkeypatch.setattr(outbox, "endpoint_deliver_due", deliver)
    holder = _in_thread(first.id)
    try:
        assert running.wait(5)
        # When a task of its second endpoint runs meanwhile, then it ends at once without delivering
        assert tasks.endpoint_deliver_task(second.id)["waiting"] == 1
        assert ran == [first.id]
        # While another organization's endpoint is not held up
        assert "waiting" not in tasks.endpoint_deliver_task(theirs.id)
        assert ran == [first.id, theirs.id]
    finally:
        release.set()
        holder.join()
    # And when the first run ends, the waiting endpoint is queued for the slot it freed
    assert woken == [second.id]
    assert "waiting" not in tasks.endpoint_deliver_task(second.id)


def test_failing_endpoints_share_their_own_lane_not_their_organizations(org, endpoint_for, monkeypatch, settings):
    settings.EVENTS_ORG_MAX_IN_FLIGHT = 1
    settings.EVENTS_FAILING_MAX_IN_FLIGHT = 1
    failing, _ = endpoint_for(org, "http://127.0.0.1:9/dead")
    healthy, _ = endpoint_for(org, "http://127.0.0.1:9/fine")
    WebhookEndpoint.objects.filter(id=failing.id).update(consecutive_failures=3)
    assert lanes.endpoint_lane(endpoint=WebhookEndpoint.objects.get(id=failing.id)).name == lanes.FAILING_LANE
    assert lanes.endpoint_lane(endpoint=healthy).name == f"org:{org.id}"
    monkeypatch.setattr(queue, "delivery_enqueue", lambda endpoint_id: None)
    # Given a failing endpoint's run in progress
    running, release = threading.Event(), threading.Event()

    def deliver(*, endpoint_id):
        if endpoint_id == failing.id:
            running.set()
            release.wait(10)
        return {"delivered": 0, "failed_attempts": 0}

    monkeypatch.setattr(outbox, "endpoint_deliver_due", deliver)
    holder = _in_thread(failing.id)
    try:
        assert running.wait(5)
        # Then the organization's healthy endpoint still runs
        assert "waiting" not in tasks.endpoint_deliver_task(healthy.id)
    finally:
        release.set()
        holder.join()


def test_a_killed_workers_slot_frees_itself_after_its_lease(org, endpoint_for, monkeypatch):
    endpoint, _ = endpoint_for(org, "http://127.0.0.1:9/a")
    lane = lanes.endpoint_lane(endpoint=endpoint)
    # Given a slot taken by a run that never ended (its worker was killed), with its lease run out
    monkeypatch.setattr(lanes, "SLOT_LEASE_SECONDS", 0.2)
    assert lanes._slot_take(lane=lane, endpoint_id="ep_killed") is not None
    assert lanes._slot_take(lane=lane, endpoint_id=endpoint.id) is None
    wait_for(lambda: lanes._slot_take(lane=lane, endpoint_id=endpoint.id) is not None, timeout=3)
