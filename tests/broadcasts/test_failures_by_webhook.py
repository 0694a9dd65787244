"""Failures that come by webhook (docs/rules.md): a signed ``failed`` status is classified by the same table as an
answer to the POST, so the send's error {code, message, retryable} reads the same whichever way it arrived; a
131049 starts the number's marketing hold at the status's timestamp."""

from datetime import UTC, datetime, timedelta

import orjson
import pytest

from broadcasts.delivery.outcomes import outcome_row
from broadcasts.models import MarketingHold, Send, SendStatus
from tests.broadcasts.counts_support import assert_counts_exact
from tests.events.helpers import broadcast_with_sends, meta_envelope, meta_signature, status_entry
from whatsapp.client import SendResult
from whatsapp.errors import parse_graph_error

URL = "/v1/webhooks/whatsapp"
SECRET = "meta-app-secret"
T0 = 1_790_000_000

# Meta's codes across every class of the table, and one it does not list.
UNKNOWN = 987654
CODES = [131049, 131026, 131050, 131000, 130429, 131056, 1, 131048, 190, 132001, UNKNOWN]


@pytest.fixture(autouse=True)
def _meta_settings(settings):
    settings.WHATSAPP_APP_SECRET = SECRET
    settings.MARKETING_LIMIT_HOLD_SECONDS = 86400


def post_signed(client, payload):
    body = orjson.dumps(payload)
    return client.post(
        URL, data=body, content_type="application/json", HTTP_X_HUB_SIGNATURE_256=meta_signature(body, SECRET)
    )


def failed_entry(wamid: str, code: int | None, timestamp: int = T0) -> dict:
    errors = [] if code is None else [{"code": code, "title": f"Error {code}", "message": f"Error {code}"}]
    return status_entry(wamid, "failed", timestamp, errors=errors)


def error_as_the_post_answer_would_store(code: int, http_status: int) -> tuple[str, bool]:
    """(code, retryable) the delivery engine stores for a final answer to the POST with that code."""
    error = parse_graph_error(http_status, {"error": {"code": code, "message": f"Error {code}"}})
    row = outcome_row(send=_last_attempt, result=SendResult(error=error), now=datetime.now(UTC))
    return row.error_code, bool(row.error_retryable)


class _LastAttempt:  # a send on its 6th attempt: a transient answer is final too
    id, index, to, variables, attempts = 1, 0, "+34600000000", {}, 6


_last_attempt = _LastAttempt()


@pytest.mark.parametrize("code", CODES)
def test_a_failed_webhook_gets_the_retryable_an_answer_to_the_post_would(client, org, channel, template, code):
    # Given a SENT send
    broadcast = broadcast_with_sends(org=org, channel=channel, template=template, count=1)
    # When Meta's signed webhook says it failed with this code
    response = post_signed(client, meta_envelope(statuses=[failed_entry(f"wamid.{broadcast.id}.0", code)]))
    assert response.status_code == 200
    # Then the send is FAILED with the code and the retryable the POST's answer would have given it
    send = Send.objects.get(broadcast=broadcast)
    assert send.status == SendStatus.FAILED
    # (a code the table does not know is classed by the answer's HTTP status, which a webhook has none of: it is
    # permanent, as in a 4xx answer)
    for http_status in (400, 500) if code != UNKNOWN else (400,):
        assert (send.error_code, send.error_retryable) == error_as_the_post_answer_would_store(code, http_status)
    assert_counts_exact(broadcast)


def test_the_marketing_limit_is_retryable_and_others_as_their_class(client, org, channel, template):
    broadcast = broadcast_with_sends(org=org, channel=channel, template=template, count=4)
    statuses = [
        failed_entry(f"wamid.{broadcast.id}.0", 131049),
        failed_entry(f"wamid.{broadcast.id}.1", 131026),
        failed_entry(f"wamid.{broadcast.id}.2", 131000),
        failed_entry(f"wamid.{broadcast.id}.3", None),  # no errors[]: nothing to retry on
    ]
    assert post_signed(client, meta_envelope(statuses=statuses)).status_code == 200
    stored = dict(Send.objects.filter(broadcast=broadcast).values_list("index", "error_retryable"))
    assert stored == {0: True, 1: False, 2: True, 3: False}


def test_a_131049_webhook_holds_the_number_from_the_status_timestamp(client, org, channel, template):
    # Given two SENT sends
    broadcast = broadcast_with_sends(org=org, channel=channel, template=template, count=2)
    # When one fails by webhook with 131049 at T0, the other with 131026
    statuses = [failed_entry(f"wamid.{broadcast.id}.0", 131049), failed_entry(f"wamid.{broadcast.id}.1", 131026)]
    assert post_signed(client, meta_envelope(statuses=statuses)).status_code == 200
    # Then only the 131049 number is held, for MARKETING_LIMIT_HOLD_SECONDS from the status's own time
    held = Send.objects.get(broadcast=broadcast, index=0)
    hold = MarketingHold.objects.get()
    assert (hold.organization_id, hold.to) == (org.id, held.to)
    assert hold.failed_at == datetime.fromtimestamp(T0, tz=UTC)
    assert hold.until == datetime.fromtimestamp(T0, tz=UTC) + timedelta(days=1)


def test_a_redelivered_or_older_131049_never_shortens_a_hold(client, org, channel, template):
    broadcast = broadcast_with_sends(org=org, channel=channel, template=template, count=2)
    late = failed_entry(f"wamid.{broadcast.id}.0", 131049, T0 + 100)
    assert post_signed(client, meta_envelope(statuses=[late])).status_code == 200
    # The same webhook again, and an older failure of the same number in another send
    Send.objects.filter(broadcast=broadcast, index=1).update(to=Send.objects.get(broadcast=broadcast, index=0).to)
    early = failed_entry(f"wamid.{broadcast.id}.1", 131049, T0)
    assert post_signed(client, meta_envelope(statuses=[late, early])).status_code == 200
    hold = MarketingHold.objects.get()
    assert hold.until == datetime.fromtimestamp(T0 + 100, tz=UTC) + timedelta(days=1)
