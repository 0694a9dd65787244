"""The beat sweeper wakes every endpoint with due work, once per interval."""

from broadcasts.notifications import message_events_publish
from events import outbox, queue, tasks
from tests.events.helpers import broadcast_with_sends


def test_sweep_wakes_each_due_endpoint_once_until_its_task_starts(org, channel, template, endpoint_for, monkeypatch):
    # Given two endpoints with a due event each
    first, _ = endpoint_for(org, "http://127.0.0.1:9/a")
    second, _ = endpoint_for(org, "http://127.0.0.1:9/b")
    broadcast = broadcast_with_sends(org=org, channel=channel, template=template, count=1)
    message_events_publish(send_ids=list(broadcast.sends.values_list("id", flat=True)), status="SENT")
    woken: list[str] = []
    monkeypatch.setattr(queue, "delivery_task_send", woken.append)
    # When the sweeper runs twice in a row, then each endpoint gets one task (the second is still queued)
    assert tasks.deliveries_sweep_task() == 2
    assert tasks.deliveries_sweep_task() == 2
    assert sorted(woken) == sorted([first.id, second.id])
    # And once a task has started, the next sweep may queue another
    monkeypatch.setattr(outbox, "endpoint_deliver_due", lambda endpoint_id: {"delivered": 0, "failed_attempts": 0})
    tasks.endpoint_deliver_task(first.id)
    tasks.deliveries_sweep_task()
    assert sorted(woken) == sorted([first.id, second.id, first.id])


def test_a_task_that_spends_its_budget_requeues_itself(org, endpoint_for, monkeypatch):
    endpoint, _ = endpoint_for(org, "http://127.0.0.1:9/a")
    woken: list[str] = []
    monkeypatch.setattr(queue, "delivery_task_send", woken.append)
    monkeypatch.setattr(
        outbox,
        "endpoint_deliver_due",
        lambda endpoint_id: {"delivered": 500, "failed_attempts": 0, "budget_spent": 1},
    )
    tasks.endpoint_deliver_task(endpoint.id)
    assert woken == [endpoint.id]


def test_deliver_task_runs_the_service(org, channel, template, endpoint_for, enqueued, receiver):
    endpoint, _ = endpoint_for(org, receiver.url)
    broadcast = broadcast_with_sends(org=org, channel=channel, template=template, count=2)
    message_events_publish(send_ids=list(broadcast.sends.values_list("id", flat=True)), status="SENT")
    assert tasks.endpoint_deliver_task(endpoint.id) == {"delivered": 2, "failed_attempts": 0}
    assert len(receiver.requests) == 2
