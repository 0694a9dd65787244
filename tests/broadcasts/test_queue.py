"""broadcasts/queue.py: work is enqueued by task name, with the options the tasks had, and a broker that is down
never turns a committed broadcast's answer into an error."""

import logging
from unittest import mock

import pytest

from broadcasts import queue


@pytest.fixture
def send_task():
    with mock.patch("broadcasts.queue.current_app") as app:
        yield app.send_task


def test_dispatch_goes_by_name_without_retrying_a_broker_that_is_down(send_task):
    queue.enqueue_dispatch("b1")
    send_task.assert_called_once_with("broadcasts.dispatch", args=["b1"], kwargs=None, ignore_result=True, retry=False)


def test_a_broker_error_is_logged_not_raised(send_task, caplog):
    send_task.side_effect = OSError("connection refused")
    with caplog.at_level(logging.WARNING, logger="broadcasts.queue"):
        queue.enqueue_dispatch("b1")
    assert "dispatch of b1 not queued" in caplog.text


def test_a_wake_carries_its_time_and_countdown(send_task):
    queue.dispatch_at("b1", wake_at=123.5, countdown=2.0)
    send_task.assert_called_once_with(
        "broadcasts.dispatch", args=["b1"], kwargs={"wake_at": 123.5}, ignore_result=True, countdown=2.0
    )


def test_chunk_tasks_carry_their_time_limits_and_a_busy_channel_comes_back_in_one_to_two_seconds(send_task, settings):
    settings.DELIVERY_LEASE_SECONDS = 60.0
    queue.chunk_enqueue("b1", 1, 9)
    queue.chunk_requeue_channel_busy("b1", 1, 9)
    first, again = send_task.call_args_list
    assert first == mock.call(
        "broadcasts.send_chunk", args=["b1", 1, 9], kwargs=None, ignore_result=True, soft_time_limit=50, time_limit=55
    )
    assert again.kwargs["args"] == ["b1", 1, 9] and again.kwargs["time_limit"] == 55
    assert 1.0 <= again.kwargs["countdown"] <= 2.0


def test_the_names_are_the_tasks_names():
    from broadcasts import tasks

    assert tasks.broadcast_dispatch_task.name == queue.DISPATCH == "broadcasts.dispatch"
    assert tasks.send_chunk_task.name == queue.SEND_CHUNK == "broadcasts.send_chunk"
    assert (tasks.send_chunk_task.soft_time_limit, tasks.send_chunk_task.time_limit) == queue.chunk_time_limits()
