"""Every pause of a broadcast is one log line naming the broadcast, the code and the message, at the level an
operator acts on (docs/operations.md), and counts in msg_broadcast_pauses_total{code}."""

import logging

import pytest

from broadcasts import lifecycle, services
from broadcasts.models import BroadcastStatus
from tests.delivery_support import broadcast_make, numbers
from tests.metrics_support import scrape, value


@pytest.fixture
def running(channel, template):
    return broadcast_make(channel=channel, template=template, recipients=numbers(2), status=BroadcastStatus.IN_PROGRESS)


@pytest.mark.parametrize(
    ("code", "level"),
    [
        ("190", logging.ERROR),
        ("131031", logging.ERROR),
        ("132015", logging.WARNING),
        ("budget_exceeded", logging.WARNING),
    ],
)
def test_an_engine_pause_is_logged_with_id_code_and_message(
    running, code, level, caplog, client, django_capture_on_commit_callbacks
):
    before = scrape(client)
    with caplog.at_level(logging.INFO, logger="broadcasts.lifecycle"), django_capture_on_commit_callbacks(execute=True):
        assert lifecycle.broadcast_pause_for_account_error(
            broadcast_id=running.id, reason={"code": code, "message": "Meta said no."}
        )
    [record] = [r for r in caplog.records if r.name == "broadcasts.lifecycle"]
    assert record.levelno == level
    assert running.id in record.getMessage() and code in record.getMessage() and "Meta said no." in record.getMessage()
    after = scrape(client)
    assert (
        value(after, "msg_broadcast_pauses_total", code=code) - value(before, "msg_broadcast_pauses_total", code=code)
        == 1
    )


def test_a_manual_pause_is_info(running, caplog, django_capture_on_commit_callbacks):
    with caplog.at_level(logging.INFO, logger="broadcasts.lifecycle"), django_capture_on_commit_callbacks(execute=True):
        services.broadcast_pause(broadcast_id=running.id, organization=running.organization)
    [record] = [r for r in caplog.records if r.name == "broadcasts.lifecycle"]
    assert record.levelno == logging.INFO and "manual" in record.getMessage()


def test_a_pause_rolled_back_logs_nothing(running, caplog):
    # (the test's transaction never commits and no callback is captured)
    with caplog.at_level(logging.INFO, logger="broadcasts.lifecycle"):
        lifecycle.broadcast_pause_for_account_error(broadcast_id=running.id, reason={"code": "190", "message": "x"})
    assert not [r for r in caplog.records if r.name == "broadcasts.lifecycle"]
