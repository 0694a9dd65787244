"""The control API (sandbox.control): config, input checks, the arrival log, stats and reset."""

import time

import pytest
import requests

from tests.sandbox.support import PHONE, TO, message, send


def test_config_latency_and_default_outcome(sandbox):
    # given every send answered after 200 ms with a 500
    sandbox.config(latency_ms=200, default_outcome="http500")
    started = time.monotonic()

    # when
    response = send(sandbox)

    # then
    assert response.status_code == 500
    assert time.monotonic() - started >= 0.2
    # and a reset restores the start-up config
    sandbox.reset()
    assert sandbox.config()["default_outcome"] == "ok"
    assert send(sandbox).status_code == 200


@pytest.mark.parametrize(
    ("path", "payload"),
    [
        ("/_sandbox/script", {"to": TO, "outcomes": ["explode"]}),
        ("/_sandbox/script", {"to": TO, "outcomes": ["http200"]}),
        ("/_sandbox/script", {"to": "", "outcomes": ["ok"]}),
        ("/_sandbox/config", {"latency_ms": -1}),
        ("/_sandbox/config", {"default_outcome": "nope"}),
        ("/_sandbox/config", {"unknown_key": 1}),
        ("/_sandbox/config", {"phone_mps_cap": 0}),
        ("/_sandbox/config", {"pair_rate_limit_ms": 0}),
        ("/_sandbox/templates", {"templates": "x"}),
    ],
)
def test_control_api_refuses_bad_input(sandbox, path, payload):
    response = requests.post(f"{sandbox.url}{path}", json=payload, timeout=5)

    assert response.status_code == 400
    assert "error" in response.json()


def test_stats_count_per_phone_and_busiest_second(sandbox):
    # given 3 sends in a burst, then 2 more after more than a second
    for _ in range(3):
        send(sandbox)
    time.sleep(1.1)
    for _ in range(2):
        send(sandbox)
    sandbox.script(TO, ["error:131026"])
    send(sandbox, phone="100000000000002")

    # when
    stats = sandbox.stats()

    # then
    phone = stats["phone_numbers"][PHONE]
    assert (phone["total"], phone["accepted"], phone["max_in_one_second"]) == (5, 5, 3)
    assert sum(phone["per_second"].values()) == 5
    assert 0 <= phone["min_repeat_gap_seconds"] < 1  # the same number was sent to in the burst
    assert stats["phone_numbers"]["100000000000002"]["outcomes"] == {"error:131026": 1}
    assert stats["total"] == 6


def test_requests_filters_by_number_and_since(sandbox):
    send(sandbox)
    send(sandbox, message(to="+573009998877"))
    send(sandbox)

    assert [r["seq"] for r in sandbox.requests(to=TO)] == [1, 3]
    assert [r["seq"] for r in sandbox.requests(since=1)] == [2, 3]
    assert [r["to"] for r in sandbox.requests(to="+573009998877")] == ["573009998877"]


def test_reset_forgets_requests_and_scripts(sandbox):
    sandbox.script(TO, ["http500"])
    send(sandbox, message(to="+573009998877"))

    sandbox.reset()

    assert sandbox.requests() == []
    assert sandbox.stats()["total"] == 0
    assert send(sandbox).status_code == 200
