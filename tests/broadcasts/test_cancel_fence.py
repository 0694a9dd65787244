"""Cancel and pause take effect when they answer (docs/api.md): no POST reaches Meta after their 200.

Real HTTP to a gunicorn serving the API, a real worker posting at 80/s to the sandbox, and the sandbox's own
arrival times (``received_at``, its clock, this machine's) compared with the moment the 200 was read.
"""

import subprocess
import sys
import time

import pytest
import requests

from broadcasts.models import Send
from broadcasts.queue import enqueue_dispatch
from sandbox.process import free_port
from tests.broadcasts.counts_support import assert_counts_exact
from tests.delivery_support import broadcast_make, numbers, wait_for
from tests.gunicorn_process import ROOT, die_with_parent

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture(scope="module")
def api_server(worker_env):
    """gunicorn on the test database (tests.gunicorn_process's probe gives a cold start on a loaded box 1 s only)."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "config.wsgi:application", "--bind", f"127.0.0.1:{port}"]
        + ["--workers", "2", "--worker-class", "sync", "--log-level", "warning"],
        cwd=ROOT,
        env=worker_env,
        stdout=subprocess.DEVNULL,
        preexec_fn=die_with_parent,
    )
    base = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        try:
            return requests.get(f"{base}/v1/health", timeout=10).status_code in (200, 503)
        except requests.RequestException:
            assert process.poll() is None, "gunicorn died"
            return False

    try:
        wait_for(ready, timeout=60, interval=0.2, message="gunicorn ready")
        yield base
    finally:
        process.terminate()
        process.wait(timeout=10)


def _steer(api_server, token, broadcast_id, action):
    response = requests.post(
        f"{api_server}/v1/messages/bulk/{broadcast_id}/{action}",
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    answered_at = time.time()
    assert response.status_code == 200, response.text
    return response.json(), answered_at


def _start(channel, template, sandbox, count):
    channel.max_mps = 80
    channel.save()
    broadcast = broadcast_make(channel=channel, template=template, recipients=numbers(count))
    enqueue_dispatch(broadcast.id)
    sandbox.wait_for_requests(60, timeout=15)
    return broadcast


@pytest.mark.parametrize("attempt", range(2))
def test_no_post_after_the_200_of_cancel(
    attempt, channel, template, token, delivery_sandbox, worker, delivery_settings, api_server
):
    # Given a broadcast in full flight at 80/s
    broadcast = _start(channel, template, delivery_sandbox, 400)

    # When it is cancelled over HTTP
    body, answered_at = _steer(api_server, token, broadcast.id, "cancel")
    assert body["status"] == "CANCELLED"

    # Then no POST arrived at the sandbox after the 200 was read
    wait_for(lambda: not Send.objects.filter(broadcast=broadcast, status="PENDING").exists(), timeout=15)
    time.sleep(1.0)
    arrivals = [r["received_at"] for r in delivery_sandbox.requests()]
    late = [round(t - answered_at, 4) for t in arrivals if t >= answered_at]
    assert late == [], f"{len(late)} POSTs after the 200 (seconds after it: {late})"
    # and counts.cancelled is exactly the sends never posted; every posted one kept Meta's answer
    counts = requests.get(
        f"{api_server}/v1/messages/bulk/{broadcast.id}", headers={"Authorization": f"Bearer {token}"}, timeout=10
    ).json()["counts"]
    assert counts["cancelled"] == 400 - len(arrivals)
    assert counts["sent"] == len(arrivals)
    assert 60 <= len(arrivals) < 400
    assert assert_counts_exact(broadcast)[broadcast.id] == counts


@pytest.mark.parametrize("attempt", range(2))
def test_no_post_after_the_200_of_pause_and_resume_goes_on(
    attempt, channel, template, token, delivery_sandbox, worker, delivery_settings, api_server
):
    # Given a broadcast in full flight at 80/s
    broadcast = _start(channel, template, delivery_sandbox, 300)

    # When it is paused over HTTP
    body, answered_at = _steer(api_server, token, broadcast.id, "pause")
    assert body["status"] == "PAUSED"

    # Then no POST arrived after the 200, and the sends not posted stay PENDING
    time.sleep(1.5)
    arrivals = [r["received_at"] for r in delivery_sandbox.requests()]
    late = [round(t - answered_at, 4) for t in arrivals if t >= answered_at]
    assert late == [], f"{len(late)} POSTs after the 200 (seconds after it: {late})"
    wait_for(
        lambda: Send.objects.filter(broadcast=broadcast, status="SENT").count() == len(arrivals),
        timeout=10,
        message="every posted send recorded",
    )
    assert Send.objects.filter(broadcast=broadcast, status="PENDING").count() == 300 - len(arrivals)

    # and after resume every send goes out, once
    _steer(api_server, token, broadcast.id, "resume")
    wait_for(lambda: Send.objects.filter(broadcast=broadcast, status="SENT").count() == 300, timeout=20)
    posts = [r["to"] for r in delivery_sandbox.requests()]
    assert len(posts) == len(set(posts)) == 300
    assert_counts_exact(broadcast)
