"""Scripted outcomes (sandbox.outcomes): Meta's errors, HTTP failures, hangs, drops and slow answers, per number."""

import time

import pytest
import requests

from tests.sandbox.support import TO, message, send
from whatsapp.errors import ErrorClass, parse_graph_error


def test_scripted_outcomes_are_consumed_in_order_then_ok(sandbox):
    # given a script for one number
    outcomes = ["http500", "error:131026", "error:130429", "http429", "http503", "error:190", "raw502", "error:131057"]
    sandbox.script(TO, outcomes)

    # when the number is sent to once per outcome, and once more
    responses = [send(sandbox) for _ in range(len(outcomes) + 1)]

    # then each answer is the scripted one, with a plausible status and Meta's envelope
    got = [(r.status_code, parse_graph_error(r.status_code, r.content)) for r in responses[:-1]]
    assert [(status, error.code, error.error_class) for status, error in got] == [
        (500, "1", ErrorClass.TRANSIENT),
        (400, "131026", ErrorClass.PERMANENT),
        (429, "130429", ErrorClass.TRANSIENT),
        (429, "4", ErrorClass.TRANSIENT),
        (503, "2", ErrorClass.TRANSIENT),
        (401, "190", ErrorClass.ACCOUNT),
        (502, "http_502", ErrorClass.TRANSIENT),
        (503, "131057", ErrorClass.TRANSIENT),
    ]
    assert responses[-1].status_code == 200
    assert [r["outcome"] for r in sandbox.requests()] == outcomes + ["ok"]


def test_meta_error_envelope_shape(sandbox):
    sandbox.script(TO, ["error:131026"])

    error = send(sandbox).json()["error"]

    assert set(error) == {"message", "type", "code", "error_data", "fbtrace_id"}
    assert error["message"].startswith("(#131026) ")
    assert error["error_data"]["details"]


def test_scripts_are_per_number(sandbox):
    sandbox.script(TO, ["error:131026"])

    other = send(sandbox, message(to="+573009998877"))
    scripted = send(sandbox)

    assert (other.status_code, scripted.status_code) == (200, 400)


def test_script_numbers_match_by_digits(sandbox):
    sandbox.script("573001112233", ["http500"])

    assert send(sandbox, message(to="+57 300 111 2233")).status_code == 500


def test_hang_never_answers_before_the_client_gives_up(sandbox):
    sandbox.script(TO, ["hang", "ok"])
    started = time.monotonic()

    with pytest.raises(requests.ReadTimeout):
        send(sandbox, timeout=0.5)

    assert time.monotonic() - started >= 0.5
    # the request did arrive: its outcome is unknown to the client only
    assert [r["outcome"] for r in sandbox.requests(to=TO)] == ["hang"]
    assert send(sandbox).status_code == 200


def test_drop_closes_the_connection_without_an_answer(sandbox):
    sandbox.script(TO, ["drop"])

    with pytest.raises(requests.ConnectionError):
        send(sandbox)

    assert sandbox.requests()[0]["outcome"] == "drop"
    assert send(sandbox).status_code == 200


def test_slow_outcome_adds_latency(sandbox):
    sandbox.script(TO, ["slow:300"])
    started = time.monotonic()

    response = send(sandbox)

    assert response.status_code == 200
    assert time.monotonic() - started >= 0.3
