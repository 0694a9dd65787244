"""What Meta reports by status webhook moves the metrics: a failed status counts in msg_sends_total as a failure
of its code (beside the sent it counted when Meta accepted it), and the funnel msg_meta_statuses_total counts
delivered, read and failed per channel. Real signed POSTs to /v1/webhooks/whatsapp, read back from GET /metrics."""

import logging

import orjson
import pytest

from broadcasts.models import Send, SendStatus
from tests.events.helpers import broadcast_with_sends, meta_envelope, meta_signature, status_entry
from tests.metrics_support import scrape, value

URL = "/v1/webhooks/whatsapp"
SECRET = "metrics-webhook-secret"


@pytest.fixture(autouse=True)
def _meta_settings(settings):
    settings.WHATSAPP_APP_SECRET = SECRET


def _post(client, statuses):
    body = orjson.dumps(meta_envelope(statuses=statuses))
    response = client.post(
        URL, data=body, content_type="application/json", HTTP_X_HUB_SIGNATURE_256=meta_signature(body, SECRET)
    )
    assert response.status_code == 200
    return response


def _wamid(broadcast, i):
    return f"wamid.{broadcast.id}.{i}"


@pytest.fixture
def broadcast(org, channel, template):
    return broadcast_with_sends(org=org, channel=channel, template=template, count=30)


def test_failed_status_131050_moves_sends_total_failed_and_the_funnel(
    client, broadcast, channel, django_capture_on_commit_callbacks, caplog
):
    # Given 21 sends Meta accepted (SENT)
    before = scrape(client)
    failed = [
        status_entry(_wamid(broadcast, i), "failed", errors=[{"code": 131050, "title": "User stopped marketing"}])
        for i in range(21)
    ]
    # When Meta reports all 21 failed with 131050 in one webhook
    with caplog.at_level(logging.INFO), django_capture_on_commit_callbacks(execute=True):
        _post(client, failed)
    after = scrape(client)

    # Then msg_sends_total counts 21 failures with that code on that channel, and so does the funnel
    assert Send.objects.filter(broadcast=broadcast, status=SendStatus.FAILED, error_code="131050").count() == 21
    labels = {"channel": channel.id, "outcome": "failed", "code": "131050"}
    assert value(after, "msg_sends_total", **labels) - value(before, "msg_sends_total", **labels) == 21
    funnel = {"channel": channel.id, "status": "failed", "code": "131050"}
    assert value(after, "msg_meta_statuses_total", **funnel) - value(before, "msg_meta_statuses_total", **funnel) == 21
    # and one INFO line for the body, not one per send
    lines = [r for r in caplog.records if "sends failed" in r.getMessage()]
    assert len(lines) == 1 and lines[0].levelno == logging.INFO and "131050: 21" in lines[0].getMessage()


def test_delivered_and_read_move_the_funnel_once_per_send(
    client, broadcast, channel, django_capture_on_commit_callbacks
):
    before = scrape(client)
    with django_capture_on_commit_callbacks(execute=True):
        # 5 delivered, 2 of them read later; 3 read straight from SENT (delivered implied); one read twice
        _post(client, [status_entry(_wamid(broadcast, i), "delivered") for i in range(5)])
        _post(client, [status_entry(_wamid(broadcast, i), "read") for i in (0, 1)])
        _post(client, [status_entry(_wamid(broadcast, i), "read") for i in (10, 11, 12)])
        _post(client, [status_entry(_wamid(broadcast, 12), "read")])  # a redelivery changes nothing
    after = scrape(client)

    def delta(status):
        labels = {"channel": channel.id, "status": status}
        return value(after, "msg_meta_statuses_total", **labels) - value(before, "msg_meta_statuses_total", **labels)

    assert (delta("delivered"), delta("read"), delta("failed")) == (8, 5, 0)
    # delivered and read are not send outcomes: msg_sends_total did not move
    assert value(after, "msg_sends_total", channel=channel.id) == value(before, "msg_sends_total", channel=channel.id)


def test_a_body_rolled_back_counts_nothing(client, broadcast, channel, settings):
    # Without the commit (the test's transaction is never committed, no callback captured), nothing is counted:
    # a body retried after a deadlock counts once, when it commits.
    before = scrape(client)
    _post(client, [status_entry(_wamid(broadcast, 0), "failed", errors=[{"code": 131026}])])
    after = scrape(client)
    labels = {"channel": channel.id, "outcome": "failed", "code": "131026"}
    assert value(after, "msg_sends_total", **labels) == value(before, "msg_sends_total", **labels)
