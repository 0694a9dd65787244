"""The demo (`make run`: its own PostgreSQL and Redis, gunicorn x2, a prefork worker, beat and the sandbox posting
Meta's webhooks) holds a concurrent load of its own with no error: run for real, in a copy of the tree with its
own var/ folder and free ports, through scripts/run-demo.sh exactly as `make run` starts it, then stopped as Ctrl-C
stops it (no ERROR line on the way out either, and its servers stopped)."""

import pytest

from benchmarks.demo_load import demo_credentials, demo_start, log_errors, run_load

# Its own target (`make test-demo`), out of `make test` and CI's time budget: `make test` already runs the demo's
# start-up (tests/core/test_procfile.py) and `make chaos-ci` the stack under load and faults.
pytestmark = [pytest.mark.slow, pytest.mark.demo]


def test_the_demo_holds_two_concurrent_broadcasts_with_webhooks_and_events_without_a_lock_error():
    # Given the demo stack, started as `make run` starts it
    demo = demo_start()
    try:
        token, channel_id = demo_credentials(demo.log())
        started_log = len(demo.log())
        # When two broadcasts (600 + 400 recipients, at the demo channel's 80 mps) run at once, with the sandbox's
        # delivered/read webhooks and a customer endpoint receiving every event
        result = run_load(
            base_url=demo.base_url, token=token, channel_id=channel_id, sizes=[600, 400], timeout=60, poll=2.0
        )
    finally:
        demo.stop()
    log = demo.log()[started_log:]
    # Then both broadcasts are COMPLETED with every send READ, and every event reached the customer
    assert result["all_completed_and_read"], result
    for broadcast in result["broadcasts"].values():
        assert broadcast["status"] == "COMPLETED" and broadcast["counts"]["read"] in (600, 400), result
    assert result["events_received"] == result["events_expected"] == 3 * 1000 + 2, result
    # And the processes logged no lock error, no traceback, no ERROR line and no 5xx answer
    errors = log_errors(log)
    assert errors["database_is_locked"] == 0, errors
    assert errors["traceback"] == 0, errors
    assert errors["error_lines"] == 0, errors
    assert errors["http_5xx"] == 0, errors
    # (and the log is the real processes' one: the webhooks and the worker's tasks went through it)
    assert "POST /v1/webhooks/whatsapp" in log and "events.endpoint_deliver" in log
    # And the stop (Ctrl-C) stopped the worker warmly and then the demo's PostgreSQL and Redis
    assert "Warm shutdown" in log and "services: PostgreSQL and Redis stopped" in log, log[-3000:]
