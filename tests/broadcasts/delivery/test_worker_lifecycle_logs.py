"""A real worker process: the engine's pause on Meta's account-level error is one ERROR line naming the broadcast,
the code and Meta's message; and a clean stop (SIGTERM) closes the worker's HTTP sessions: no asyncio
"Unclosed connector" / "Unclosed client session" error on its way out."""

import os
import re
import signal

import pytest

from broadcasts.queue import enqueue_dispatch
from tests.delivery_support import CeleryProcess, broadcast_make, broadcast_settled, numbers, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_pause_logged_as_error_and_a_clean_stop_leaves_no_unclosed_session(
    channel, template, delivery_sandbox, worker_env, delivery_settings
):
    worker = CeleryProcess("worker", env=worker_env, concurrency=2).start()
    try:
        # Given a broadcast whose 2nd send gets Meta's 190 (access token expired): an account-level error
        recipients = numbers(3)
        delivery_sandbox.script(recipients[1], ["error:190"])
        broadcast = broadcast_make(channel=channel, template=template, recipients=recipients)

        # When the worker sends it
        enqueue_dispatch(broadcast.id)
        wait_for(lambda: broadcast_settled(broadcast.id, statuses=("PAUSED",)), timeout=30, message="paused")
        assert len(delivery_sandbox.requests()) >= 2  # the session was used: POSTs went out over it

        # Then its log has one ERROR line with the broadcast, the code and Meta's message
        line = wait_for(
            lambda: next((x for x in worker.log().splitlines() if f"broadcast {broadcast.id} paused" in x), None),
            timeout=10,
            message="the pause's log line",
        )
        broadcast.refresh_from_db()
        assert re.search(r"\bERROR\b", line) and "code 190" in line
        assert broadcast.paused_reason["message"] and broadcast.paused_reason["message"] in line
        # and the chunk's INFO line says why its run stopped
        chunk = wait_for(
            lambda: next((x for x in worker.log().splitlines() if f"chunk {broadcast.id}:" in x), None),
            timeout=10,
            message="the chunk's log line",
        )
        assert "stop account_error" in chunk
        # When it is stopped as a process manager does: SIGTERM to the main process (warm shutdown)
        os.kill(worker.process.pid, signal.SIGTERM)
        worker.process.wait(timeout=30)
        log = worker.log()
    finally:
        worker.stop()
    # Then it went down cleanly and closed its aiohttp sessions
    assert worker.process.returncode == 0, log[-3000:]
    assert "Warm shutdown" in log, log[-3000:]
    assert "Unclosed" not in log, log[-3000:]
    assert "Traceback" not in log, log[-3000:]
    # (each pool process that sent closed its runtime: the session above was closed, not left to the exit)
    assert re.search(r"delivery: closed [1-9]\d* runtime", log), log[-3000:]
