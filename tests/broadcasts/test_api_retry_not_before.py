"""POST /v1/messages/bulk/{id}/retry with ``not_before`` (docs/api.md): the re-queued sends wait until then
(``waiting.retry``, a wake scheduled for then); a past, too far, malformed or offset-less value is a 400 naming
``not_before`` and changes nothing."""

from datetime import timedelta

import pytest
from django.utils import timezone

from broadcasts.models import BroadcastStatus, Send, WaitReason
from tests.broadcasts.counts_support import assert_counts_exact
from tests.broadcasts.test_api_retry import URL, ran

pytestmark = pytest.mark.django_db


def retry(api, broadcast, body):
    return api.post(f"{URL}/{broadcast.id}/retry", body, format="json")


@pytest.mark.parametrize(
    "value",
    [
        "yesterday",
        "",
        "2026-11-27T14:03:00",  # no offset
        12345,
        {"at": "soon"},
        "past",
        "31 days",
    ],
)
def test_a_bad_not_before_is_a_400_naming_it_and_changes_nothing(api, channel, template, value):
    broadcast = ran(channel, template)
    before = sorted(Send.objects.filter(broadcast=broadcast).values_list("id", "status", "error_code"))
    now = timezone.now()
    if value == "past":
        value = (now - timedelta(minutes=1)).isoformat()
    elif value == "31 days":
        value = (now + timedelta(days=31)).isoformat()
    answer = retry(api, broadcast, {"error_codes": ["131049"], "not_before": value})
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert error["code"] == "validation_error" and list(error["details"]) == ["not_before"]
    assert sorted(Send.objects.filter(broadcast=broadcast).values_list("id", "status", "error_code")) == before
    broadcast.refresh_from_db()
    assert broadcast.status == BroadcastStatus.COMPLETED


def test_every_bad_field_is_reported_at_once(api, channel, template):
    answer = retry(api, ran(channel, template), {"error_codes": [], "not_before": "soon", "when": 1})
    assert answer.status_code == 400
    assert set(answer.json()["error"]["details"]) == {"error_codes", "not_before", "when"}


def test_not_before_puts_the_sends_off_until_then(api, channel, template, django_capture_on_commit_callbacks):
    broadcast = ran(channel, template)
    not_before = (timezone.now() + timedelta(days=29, hours=23)).replace(microsecond=0)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        answer = retry(api, broadcast, {"error_codes": ["131049"], "not_before": not_before.isoformat()})
    assert answer.status_code == 200 and answer.json()["retried"] == 2
    assert len(callbacks) == 1  # the dispatch that schedules the wake
    rows = Send.objects.filter(broadcast=broadcast, status="PENDING")
    assert {(s.next_attempt_at, s.wait_reason, s.attempts) for s in rows} == {(not_before, WaitReason.RETRY, 0)}
    shown = api.get(f"{URL}/{broadcast.id}").json()
    assert shown["status"] == "IN_PROGRESS" and shown["waiting"]["retry"] == 2 and shown["waiting"]["throughput"] == 0
    assert_counts_exact(broadcast)


def test_null_not_before_is_at_once(api, channel, template):
    broadcast = ran(channel, template)
    answer = retry(api, broadcast, {"error_codes": ["131049"], "not_before": None})
    assert answer.status_code == 200 and answer.json()["retried"] == 2
    assert set(
        Send.objects.filter(broadcast=broadcast, status="PENDING").values_list("next_attempt_at", "wait_reason")
    ) == {(None, "")}
