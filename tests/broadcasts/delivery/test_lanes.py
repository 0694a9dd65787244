"""Category lanes for real (docs/rules.md): worker processes, PostgreSQL, Redis and the sandbox over HTTP."""

import time

import pytest

from broadcasts.models import Send
from broadcasts.queue import enqueue_dispatch
from templates_registry.models import Template
from tests.delivery_support import (
    CeleryProcess,
    broadcast_make,
    broadcast_settled,
    max_in_any_second,
    numbers,
    wait_for,
)

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def long_turn_worker(worker_env):
    """Two worker processes whose pumps keep a channel for ~10 s per turn (a lease of 30 s): without lanes, a
    broadcast that waits behind the channel's running one waits that long."""
    process = CeleryProcess("worker", env={**worker_env, "DELIVERY_LEASE_SECONDS": "30"}, concurrency=2).start()
    yield process
    process.stop()


def _auth_template(channel) -> Template:
    return Template.objects.create(
        waba_id=channel.waba_id,
        name="login_code",
        language="es",
        status=Template.Status.APPROVED,
        category="AUTHENTICATION",
        parameter_format=Template.ParameterFormat.NAMED,
        components=[{"type": "BODY", "text": "Hola {{nombre}}, tu codigo es {{monto}}"}],
        body_variables=["nombre", "monto"],
    )


def test_an_authentication_send_goes_within_a_second_beside_a_marketing_broadcast_at_the_cap(
    channel, template, delivery_sandbox, long_turn_worker, delivery_settings
):
    # Given a MARKETING broadcast of 800 recipients running at the channel's cap (80/s: ~10 s of work)
    marketing = broadcast_make(channel=channel, template=template, recipients=numbers(800))
    enqueue_dispatch(marketing.id)
    wait_for(lambda: len(delivery_sandbox.requests()) >= 80, timeout=20, message="the promotion is at its pace")

    # When three one-recipient AUTHENTICATION broadcasts are dispatched on the same channel, one a second
    auth_template = _auth_template(channel)
    probes = []
    for i in range(3):
        to = numbers(1, start=900_000 + i)[0]
        otp = broadcast_make(
            channel=channel, template=auth_template, recipients=[(to, {"nombre": "Ana", "monto": str(1000 + i)})]
        )
        enqueue_dispatch(otp.id)
        probes.append((otp, to, time.time()))
        time.sleep(1.0)

    # Then each one's send reaches Meta within 1 s of its dispatch, while the promotion still runs
    for otp, _, _ in probes:
        wait_for(lambda otp=otp: broadcast_settled(otp.id), timeout=15, message="the code was sent")
    requests = delivery_sandbox.requests()
    arrivals = {r["to"]: r["received_at"] for r in requests}
    latencies = [arrivals[to.lstrip("+")] - at for _, to, at in probes]
    assert max(latencies) < 1.0, latencies
    last_probe_sent = max(arrivals[to.lstrip("+")] for _, to, _ in probes)
    assert any(r["received_at"] > last_probe_sent for r in requests if r["to"] not in {p[1][1:] for p in probes})

    # And the promotion completes, every send once, with the channel's cap held in every second at Meta's end
    wait_for(lambda: broadcast_settled(marketing.id), timeout=40, message="the promotion completed")
    assert set(Send.objects.filter(broadcast=marketing).values_list("status", flat=True)) == {"SENT"}
    requests = delivery_sandbox.requests()
    assert len(requests) == 803
    assert len({r["to"] for r in requests}) == 803
    assert max_in_any_second([r["received_at"] for r in requests]) <= channel.max_mps
