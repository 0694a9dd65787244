"""Test workers: a worker left running by an earlier test never serves this test's broadcasts."""

import pytest

from tests.delivery_support import CeleryProcess

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_starting_a_tests_own_worker_stops_the_workers_of_other_tests(worker, worker_env):
    # Given the session worker, started for (or before) another test, still running
    assert worker.alive()
    worker.owner = "tests/elsewhere.py::test_earlier"

    # When this test starts a worker of its own
    own = CeleryProcess("worker", env=worker_env, concurrency=1).start()
    try:
        # Then the other test's worker is gone (a pump host in it would take this test's channels from the
        # database), and this test's own keeps running
        assert not worker.alive()
        assert own.alive()
        # and a second worker of this same test leaves the first one running (several queues, several machines)
        second = CeleryProcess("worker", env=worker_env, concurrency=1).start()
        try:
            assert own.alive() and second.alive()
        finally:
            second.stop()
    finally:
        own.stop()
