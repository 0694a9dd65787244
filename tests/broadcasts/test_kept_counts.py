"""The counts kept on the broadcast (broadcasts/counts.py): exact after every kind of send transition, under
concurrency, and read without aggregating sends."""

import random
import threading
from datetime import timedelta
from unittest import mock

import orjson
import pytest
from django.conf import settings as django_settings
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from broadcasts import lifecycle, services
from broadcasts.delivery.outcomes import OutcomeRow, sends_record
from broadcasts.delivery.recovery import sends_recover_expired
from broadcasts.models import Broadcast, BroadcastStatus, Send, SendStatus
from broadcasts.queue import enqueue_dispatch
from broadcasts.status_updates.apply import sends_apply_statuses
from tests.broadcasts.counts_support import assert_counts_exact
from tests.broadcasts.test_api_create import payload
from tests.delivery_support import broadcast_make, broadcast_settled, numbers, wait_for
from tests.events.helpers import meta_envelope, meta_signature, parsed, status_entry

SECRET = "meta-app-secret"
WEBHOOK_URL = "/v1/webhooks/whatsapp"


def _create(org, channel, n: int, missing: int = 0) -> Broadcast:
    body = payload(channel, n=n)
    for recipient in body["recipients"][:missing]:
        recipient["variables"] = {}
    with mock.patch("broadcasts.services.enqueue_dispatch"):
        result = services.broadcast_create(organization=org, body=body)
    return Broadcast.objects.get(pk=result.body["broadcast_id"])


def _sent(send_id: int) -> OutcomeRow:
    return OutcomeRow(id=send_id, status=SendStatus.SENT, message_id=f"wamid.k{send_id}", sent_at=timezone.now())


@pytest.mark.django_db
def test_create_counts_pending_and_missing_variables_failed(org, channel, template):
    broadcast = _create(org, channel, n=10, missing=3)
    kept = assert_counts_exact(broadcast)[broadcast.id]
    assert (kept["pending"], kept["failed"]) == (7, 3)


@pytest.mark.django_db
def test_get_and_list_read_the_kept_counts_not_the_sends(api, org, channel, template):
    broadcast = _create(org, channel, n=5, missing=1)
    with CaptureQueriesContext(connection) as detail_queries:
        one = api.get(f"/v1/messages/bulk/{broadcast.id}").json()
    with CaptureQueriesContext(connection) as list_queries:
        page = api.get("/v1/messages/bulk").json()
    # The list never reads sends; the detail reads only its own pending sends, once, for `waiting` (bounded by the
    # broadcast's 5,000), never to count.
    assert not [q["sql"] for q in list_queries if "broadcasts_send" in q["sql"]]
    send_reads = [q["sql"] for q in detail_queries if "broadcasts_send" in q["sql"]]
    assert len(send_reads) == 1
    assert f"\"broadcast_id\" = '{broadcast.id}'" in send_reads[0] and "'PENDING'" in send_reads[0]
    assert one["counts"] == page["data"][0]["counts"] == assert_counts_exact(broadcast)[broadcast.id]
    assert one["purged_at"] is None


@pytest.mark.django_db
def test_get_of_a_broadcast_with_nothing_pending_reads_no_send(api, org, channel, template):
    broadcast = _create(org, channel, n=3, missing=3)
    assert assert_counts_exact(broadcast)[broadcast.id]["pending"] == 0
    with CaptureQueriesContext(connection) as queries:
        one = api.get(f"/v1/messages/bulk/{broadcast.id}").json()
    assert not [q["sql"] for q in queries if "broadcasts_send" in q["sql"]]
    assert one["waiting"] == {"schedule": 0, "throughput": 0, "messaging_limit": 0, "send_window": 0, "retry": 0}


@pytest.mark.django_db
def test_finalize_reads_the_kept_pending_count(org, channel, template):
    broadcast = _create(org, channel, n=2)
    Broadcast.objects.filter(pk=broadcast.pk).update(status=BroadcastStatus.IN_PROGRESS)
    first, second = Send.objects.filter(broadcast=broadcast).order_by("id")
    sends_record(rows=[_sent(first.id)])
    assert lifecycle.broadcast_finalize(broadcast_id=broadcast.id) is None  # one still pending
    sends_record(
        rows=[OutcomeRow(id=second.id, status=SendStatus.FAILED, error_code="131026", failed_at=timezone.now())]
    )
    assert lifecycle.broadcast_finalize(broadcast_id=broadcast.id) == BroadcastStatus.COMPLETED
    assert_counts_exact(broadcast)


@pytest.mark.django_db
def test_a_broadcast_meta_accepted_then_failed_is_completed_not_failed(org, channel, template):
    broadcast = _create(org, channel, n=1)
    Broadcast.objects.filter(pk=broadcast.pk).update(status=BroadcastStatus.IN_PROGRESS)
    send = Send.objects.get(broadcast=broadcast)
    sends_record(rows=[_sent(send.id)])
    sends_apply_statuses(statuses=parsed([status_entry(f"wamid.k{send.id}", "failed", errors=[{"code": 131026}])]))
    assert assert_counts_exact(broadcast)[broadcast.id]["failed"] == 1
    assert lifecycle.broadcast_finalize(broadcast_id=broadcast.id) == BroadcastStatus.COMPLETED


@pytest.mark.django_db(transaction=True)
def test_two_flushers_and_webhooks_on_one_broadcast_lose_no_update_and_never_deadlock(org, channel, template):
    # Given a broadcast of 600 pending sends, half of them already SENT
    broadcast = _create(org, channel, n=600)
    ids = list(Send.objects.filter(broadcast=broadcast).order_by("id").values_list("id", flat=True))
    sends_record(rows=[_sent(i) for i in ids[:300]])
    errors: list[BaseException] = []

    def run(work) -> None:
        try:
            work()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connection.close()

    def flusher(part: list[int]) -> None:
        for k in range(0, len(part), 25):
            rows = [
                _sent(i) if i % 3 else OutcomeRow(id=i, status=SendStatus.FAILED, failed_at=timezone.now())
                for i in part[k : k + 25]
            ]
            sends_record(rows=rows)

    def webhook(seed: int) -> None:
        rng = random.Random(seed)
        for _ in range(12):
            chosen = rng.sample(ids[:300], 40)
            entries = [status_entry(f"wamid.k{i}", rng.choice(["delivered", "read", "failed"])) for i in chosen]
            sends_apply_statuses(statuses=parsed(entries))

    # When two flushers write the other half while two webhooks move the first half, all at once
    threads = [
        threading.Thread(target=run, args=(lambda: flusher(ids[300:450]),)),
        threading.Thread(target=run, args=(lambda: flusher(ids[450:]),)),
        threading.Thread(target=run, args=(lambda: webhook(1),)),
        threading.Thread(target=run, args=(lambda: webhook(2),)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    # Then nothing failed (no deadlock) and the kept counts are exactly the sends' statuses
    assert errors == []
    kept = assert_counts_exact(broadcast)[broadcast.id]
    assert kept["pending"] == 0 and sum(kept.values()) == 600


class CountsMachine(RuleBasedStateMachine):
    """Random sequences of every kind of send transition on one broadcast; the kept counts stay exact."""

    org = channel = None

    def __init__(self) -> None:
        super().__init__()
        self.broadcast = _create(self.org, self.channel, n=12, missing=1)
        Broadcast.objects.filter(pk=self.broadcast.pk).update(status=BroadcastStatus.IN_PROGRESS)
        self.ids = list(Send.objects.filter(broadcast=self.broadcast).order_by("id").values_list("id", flat=True))

    def _pending(self) -> list[int]:
        return list(
            Send.objects.filter(broadcast=self.broadcast, status=SendStatus.PENDING).values_list("id", flat=True)
        )

    @rule(data=st.data())
    def outcomes(self, data) -> None:
        """A flush: some sends SENT, FAILED, back to PENDING for a retry, or CANCELLED unposted; repeats included."""
        chosen = data.draw(st.lists(st.sampled_from(self.ids), max_size=6))
        rows = []
        for send_id in chosen:
            kind = data.draw(st.sampled_from(["sent", "failed", "retry", "unposted"]))
            if kind == "sent":
                rows.append(_sent(send_id))
            elif kind == "failed":
                rows.append(
                    OutcomeRow(id=send_id, status=SendStatus.FAILED, error_code="131026", failed_at=timezone.now())
                )
            elif kind == "retry":
                rows.append(OutcomeRow(id=send_id, status=SendStatus.PENDING, next_attempt_at=timezone.now()))
            else:
                rows.append(OutcomeRow(id=send_id, status=SendStatus.CANCELLED, posted=False))
        sends_record(rows=rows)

    @rule(data=st.data())
    def webhook(self, data) -> None:
        """Meta's statuses in any order, redelivered, for known and unknown wamids."""
        chosen = data.draw(st.lists(st.sampled_from(self.ids), max_size=8))
        entries = [
            status_entry(f"wamid.k{i}", data.draw(st.sampled_from(["sent", "delivered", "read", "failed"])))
            for i in chosen
        ]
        sends_apply_statuses(statuses=parsed(entries))

    @rule()
    def cancel_leftovers(self) -> None:
        lifecycle.sends_cancel_unleased(broadcast_id=self.broadcast.id)

    @rule(data=st.data())
    def worker_killed(self, data) -> None:
        """A killed worker's sends: leases expired mid-POST, some at their last attempt; the sweeper's turn."""
        pending = self._pending()
        if not pending:
            return
        chosen = data.draw(st.lists(st.sampled_from(pending), min_size=1, max_size=3, unique=True))
        attempts = data.draw(st.sampled_from([1, django_settings.DELIVERY_MAX_ATTEMPTS]))
        past = timezone.now() - timedelta(seconds=5)
        Send.objects.filter(id__in=chosen).update(lease_expires_at=past, posting_at=past, attempts=attempts)
        sends_recover_expired()

    @invariant()
    def counts_exact(self) -> None:
        assert_counts_exact(self.broadcast)


@pytest.mark.django_db
def test_random_sequences_of_transitions_keep_the_counts_exact(org, channel, template, delivery_settings):
    CountsMachine.org, CountsMachine.channel = org, channel
    run_state_machine_as_test(
        CountsMachine,
        settings=hsettings(
            max_examples=25,
            stateful_step_count=12,
            deadline=None,
            suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
        ),
    )


@pytest.mark.django_db
@hsettings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(moves=st.lists(st.tuples(st.integers(0, 3), st.sampled_from(["delivered", "read", "failed"])), max_size=20))
def test_statuses_in_any_order_keep_the_counts_exact(org, channel, template, moves):
    broadcast = _create(org, channel, n=4)
    ids = list(Send.objects.filter(broadcast=broadcast).order_by("id").values_list("id", flat=True))
    sends_record(rows=[_sent(i) for i in ids])
    for index, status in moves:
        sends_apply_statuses(statuses=parsed([status_entry(f"wamid.k{ids[index]}", status)]))
    kept = assert_counts_exact(broadcast)[broadcast.id]
    assert kept["pending"] == 0 and kept["cancelled"] == 0


@pytest.mark.django_db(transaction=True)
def test_real_delivery_then_webhooks_out_of_order_and_redelivered(
    client, channel, template, delivery_sandbox, worker, delivery_settings, settings
):
    # Given a broadcast of 40 sent through the real engine (worker, sandbox Graph API)
    settings.WHATSAPP_APP_SECRET = SECRET
    broadcast = broadcast_make(channel=channel, template=template, recipients=numbers(40))
    enqueue_dispatch(broadcast.id)
    wait_for(lambda: broadcast_settled(broadcast.id), timeout=30, message="broadcast completed")
    assert assert_counts_exact(broadcast)[broadcast.id]["sent"] == 40
    wamids = list(Send.objects.filter(broadcast=broadcast).order_by("index").values_list("message_id", flat=True))

    # When Meta's signed webhooks arrive: reads before deliveries, failures, and everything twice, shuffled
    entries = [status_entry(w, "read") for w in wamids[:10]]
    entries += [status_entry(w, "delivered") for w in wamids[:30]]
    entries += [status_entry(w, "failed", errors=[{"code": 131026, "title": "Undeliverable"}]) for w in wamids[30:35]]
    bodies = [entries[k : k + 7] for k in range(0, len(entries), 7)]
    bodies = bodies + bodies
    random.Random(7).shuffle(bodies)
    for statuses in bodies:
        body = orjson.dumps(meta_envelope(statuses=statuses))
        response = client.post(
            WEBHOOK_URL,
            data=body,
            content_type="application/json",
            HTTP_X_HUB_SIGNATURE_256=meta_signature(body, SECRET),
        )
        assert response.status_code == 200

    # Then the counts kept on the broadcast are exactly the sends' statuses
    kept = assert_counts_exact(broadcast)[broadcast.id]
    assert kept == {"pending": 0, "sent": 5, "delivered": 20, "read": 10, "failed": 5, "cancelled": 0}
