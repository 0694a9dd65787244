"""The marketing frequency cap for real (docs/rules.md "Campaign controls"): Celery worker processes, the sandbox over
HTTP recording every POST it received, the cap read from PostgreSQL at posting time; and a retry put off with
``not_before``."""

import time
from collections import Counter
from datetime import timedelta

import pytest
from django.utils import timezone

from broadcasts.models import Send, WaitReason
from broadcasts.queue import enqueue_dispatch
from templates_registry.models import Channel
from tests.broadcasts.counts_support import assert_counts_exact
from tests.broadcasts.delivery.support import settle, utility_template
from tests.delivery_support import broadcast_make, numbers, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def cap(org, sends: int | None, days: int | None) -> None:
    org.marketing_frequency_cap, org.marketing_frequency_days = sends, days
    org.save()


def posts_by_number(sandbox) -> Counter:
    return Counter(request["body"].get("to") or request["body"].get("recipient") for request in sandbox.requests())


def test_a_second_marketing_broadcast_within_the_days_fails_frequency_capped_without_a_post(
    org, channel, template, delivery_sandbox, worker, delivery_settings
):
    # Given a cap of 1 MARKETING send per number per 7 days, and a first MARKETING broadcast delivered to 5 numbers
    cap(org, 1, 7)
    targets = numbers(5)
    first = broadcast_make(channel=channel, template=template, recipients=targets)
    enqueue_dispatch(first.id)
    settle(first, timeout=60)
    assert set(Send.objects.filter(broadcast=first).values_list("status", flat=True)) == {"SENT"}

    # When a second MARKETING broadcast goes to the same numbers (one more number, listed twice, new to the org)
    fresh = numbers(1, start=500)[0]
    second = broadcast_make(channel=channel, template=template, recipients=[*targets, fresh, fresh])
    enqueue_dispatch(second.id)
    settle(second, timeout=60)

    # Then the 5 known numbers fail frequency_capped (retryable, no attempt counted) without a POST; the new number's
    # first send goes and its second is capped by it
    sends = list(Send.objects.filter(broadcast=second).order_by("index"))
    assert [s.status for s in sends] == ["FAILED"] * 5 + ["SENT", "FAILED"]
    capped = [s for s in sends if s.status == "FAILED"]
    assert {(s.error_code, s.error_retryable, s.attempts) for s in capped} == {("frequency_capped", True, 0)}
    assert "1 MARKETING sends per number per 7 days" in capped[0].error_message
    assert posts_by_number(delivery_sandbox) == Counter({**dict.fromkeys(targets, 1), fresh: 1})
    assert_counts_exact(second)

    # And a UTILITY broadcast to the same numbers is not affected (neither capped nor counted)
    notice = broadcast_make(channel=channel, template=utility_template(template), recipients=targets)
    enqueue_dispatch(notice.id)
    settle(notice, timeout=60)
    assert set(Send.objects.filter(broadcast=notice).values_list("status", flat=True)) == {"SENT"}
    assert sum(posts_by_number(delivery_sandbox).values()) == 11


def test_two_racing_broadcasts_on_two_channels_post_each_number_once(
    org, channel, template, delivery_sandbox, worker, delivery_settings
):
    # Given a cap of 1/7 and two MARKETING broadcasts of the organization, on two of its channels, to the same 60
    # numbers
    cap(org, 1, 7)
    other = Channel.objects.create(
        organization=org,
        phone_number_id="100000000000002",
        waba_id=channel.waba_id,
        access_token="EAAG-test-channel-token-2",
        max_mps=80,
    )
    targets = numbers(60, start=1000)
    a = broadcast_make(channel=channel, template=template, recipients=targets)
    b = broadcast_make(channel=other, template=template, recipients=list(reversed(targets)))

    # When both start at once (two worker processes: their batches interleave)
    enqueue_dispatch(a.id)
    enqueue_dispatch(b.id)
    settle(a, timeout=90)
    settle(b, timeout=90)

    # Then Meta received exactly one POST per number, and each number has one SENT and one frequency_capped send
    assert posts_by_number(delivery_sandbox) == Counter(dict.fromkeys(targets, 1))
    outcomes = Counter(Send.objects.filter(broadcast__in=[a, b]).values_list("to", "status"))
    assert outcomes == Counter({**{(n, "SENT"): 1 for n in targets}, **{(n, "FAILED"): 1 for n in targets}})
    failed = Send.objects.filter(broadcast__in=[a, b], status="FAILED")
    assert set(failed.values_list("error_code", flat=True)) == {"frequency_capped"}
    assert_counts_exact(a)
    assert_counts_exact(b)


def test_a_retry_with_not_before_waits_then_is_checked_again_at_posting(
    org, channel, template, delivery_sandbox, worker, delivery_settings, api
):
    # Given a broadcast whose 3 sends were frequency capped (a cap of 1/7, each number already sent to)
    cap(org, 1, 7)
    targets = numbers(3, start=2000)
    first = broadcast_make(channel=channel, template=template, recipients=targets)
    enqueue_dispatch(first.id)
    settle(first, timeout=60)
    capped = broadcast_make(channel=channel, template=template, recipients=targets)
    enqueue_dispatch(capped.id)
    settle(capped, timeout=60)
    assert capped.status == "FAILED" and len(delivery_sandbox.requests()) == 3

    # When it is retried with not_before ~6 s ahead while the cap still holds
    not_before = timezone.now() + timedelta(seconds=6)
    answer = api.post(
        f"/v1/messages/bulk/{capped.id}/retry",
        {"error_codes": ["frequency_capped"], "not_before": not_before.isoformat()},
        format="json",
    )

    # Then the sends are pending, waiting for the retry time (waiting.retry), and nothing is posted meanwhile
    assert answer.status_code == 200, answer.content
    assert answer.json()["retried"] == 3 and answer.json()["status"] == "IN_PROGRESS"
    shown = api.get(f"/v1/messages/bulk/{capped.id}").json()
    assert shown["waiting"]["retry"] == 3 and shown["eta"] is not None
    rows = Send.objects.filter(broadcast=capped)
    assert {(s.status, s.next_attempt_at, s.wait_reason) for s in rows} == {("PENDING", not_before, WaitReason.RETRY)}
    time.sleep(max(0.0, (not_before - timezone.now()).total_seconds()) - 0.5)
    assert len(delivery_sandbox.requests()) == 3 and rows.filter(status="PENDING").count() == 3

    # And after it the cap is checked again: capped again, still without a POST
    settle(capped, timeout=15 + 1)
    assert set(rows.values_list("error_code", flat=True)) == {"frequency_capped"}
    assert len(delivery_sandbox.requests()) == 3

    # When the cap is turned off and they are retried again, ~5 s ahead
    cap(org, None, None)
    not_before = timezone.now() + timedelta(seconds=5)
    answer = api.post(f"/v1/messages/bulk/{capped.id}/retry", {"not_before": not_before.isoformat()}, format="json")
    assert answer.status_code == 200 and answer.json()["retried"] == 3

    # Then they are posted after not_before, and within 15 s of it
    wait_for(lambda: len(delivery_sandbox.requests()) == 6, timeout=25, message="the retried sends posted")
    times = [r["received_at"] for r in delivery_sandbox.requests()[3:]]
    assert min(times) >= not_before.timestamp() and max(times) <= not_before.timestamp() + 15
    settle(capped, timeout=30)
    assert set(rows.values_list("status", flat=True)) == {"SENT"}
    assert_counts_exact(capped)
