"""Meta's statuses applied to sends: forward only, idempotent, in a few bulk queries."""

from datetime import UTC, datetime

import pytest

from broadcasts.models import Send, SendStatus
from broadcasts.status_updates.apply import sends_apply_statuses
from tests.broadcasts.counts_support import sends_update
from tests.events.helpers import broadcast_with_sends, parsed, status_entry

T0 = 1_790_000_000


@pytest.fixture
def broadcast(org, channel, template):
    return broadcast_with_sends(org=org, channel=channel, template=template, count=5)


def wamid(broadcast, i: int) -> str:
    return f"wamid.{broadcast.id}.{i}"


def send(broadcast, i: int) -> Send:
    return Send.objects.get(broadcast=broadcast, index=i)


def test_delivered_then_read_moves_forward_with_meta_timestamps(broadcast):
    sends_apply_statuses(statuses=parsed([status_entry(wamid(broadcast, 0), "delivered", T0)]))
    assert send(broadcast, 0).status == SendStatus.DELIVERED
    assert send(broadcast, 0).delivered_at == datetime.fromtimestamp(T0, tz=UTC)

    sends_apply_statuses(statuses=parsed([status_entry(wamid(broadcast, 0), "read", T0 + 5)]))
    moved = send(broadcast, 0)
    assert moved.status == SendStatus.READ
    assert moved.read_at == datetime.fromtimestamp(T0 + 5, tz=UTC)
    assert moved.delivered_at == datetime.fromtimestamp(T0, tz=UTC)


def test_late_delivered_after_read_is_ignored(broadcast):
    sends_apply_statuses(statuses=parsed([status_entry(wamid(broadcast, 0), "read", T0 + 5)]))
    moved = sends_apply_statuses(statuses=parsed([status_entry(wamid(broadcast, 0), "delivered", T0)]))
    assert moved == {}
    assert send(broadcast, 0).status == SendStatus.READ


def test_read_without_delivered_also_stamps_delivered_at(broadcast):
    sends_apply_statuses(statuses=parsed([status_entry(wamid(broadcast, 1), "read", T0 + 9)]))
    moved = send(broadcast, 1)
    assert moved.status == SendStatus.READ
    assert moved.delivered_at == moved.read_at == datetime.fromtimestamp(T0 + 9, tz=UTC)


def test_failed_stores_metas_code_title_and_details(broadcast):
    error = {
        "code": 131026,
        "title": "Message undeliverable",
        "message": "Message undeliverable",
        "error_data": {"details": "The recipient is not a WhatsApp user."},
    }
    sends_apply_statuses(statuses=parsed([status_entry(wamid(broadcast, 2), "failed", T0, errors=[error])]))
    failed = send(broadcast, 2)
    assert failed.status == SendStatus.FAILED
    assert failed.error_code == "131026"
    assert failed.error_title == "Message undeliverable"
    assert failed.error_message == "The recipient is not a WhatsApp user."
    assert failed.error_retryable is False
    assert failed.failed_at == datetime.fromtimestamp(T0, tz=UTC)


def test_failed_from_delivered_is_allowed_but_not_from_read(broadcast):
    sends_apply_statuses(
        statuses=parsed([status_entry(wamid(broadcast, 0), "delivered"), status_entry(wamid(broadcast, 1), "read")])
    )
    failed = [{"code": 131000, "title": "Something went wrong"}]
    sends_apply_statuses(
        statuses=parsed(
            [
                status_entry(wamid(broadcast, 0), "failed", errors=failed),
                status_entry(wamid(broadcast, 1), "failed", errors=failed),
            ]
        )
    )
    assert send(broadcast, 0).status == SendStatus.FAILED
    assert send(broadcast, 0).error_message == "Something went wrong"  # the title when no message
    assert send(broadcast, 1).status == SendStatus.READ
    assert send(broadcast, 1).error_code == ""


def test_nothing_moves_a_failed_send(broadcast):
    sends_apply_statuses(statuses=parsed([status_entry(wamid(broadcast, 0), "failed", errors=[{"code": 131026}])]))
    for status in ("delivered", "read", "sent"):
        assert sends_apply_statuses(statuses=parsed([status_entry(wamid(broadcast, 0), status)])) == {}
    assert send(broadcast, 0).status == SendStatus.FAILED


def test_out_of_order_in_one_body_lands_on_the_highest_status(broadcast):
    moved = sends_apply_statuses(
        statuses=parsed(
            [
                status_entry(wamid(broadcast, 3), "read", T0 + 2),
                status_entry(wamid(broadcast, 3), "delivered", T0 + 1),
                status_entry(wamid(broadcast, 3), "sent", T0),
            ]
        )
    )
    assert moved == {SendStatus.READ: [send(broadcast, 3).id]}
    final = send(broadcast, 3)
    assert final.status == SendStatus.READ
    assert final.delivered_at == datetime.fromtimestamp(T0 + 1, tz=UTC)


def test_redelivery_changes_nothing_twice(broadcast):
    body = [status_entry(wamid(broadcast, i), "delivered", T0) for i in range(5)]
    first = sends_apply_statuses(statuses=parsed(body))
    before = {s.id: s.updated_at for s in Send.objects.filter(broadcast=broadcast)}
    second = sends_apply_statuses(statuses=parsed(body))
    assert len(first[SendStatus.DELIVERED]) == 5
    assert second == {}
    assert {s.id: s.updated_at for s in Send.objects.filter(broadcast=broadcast)} == before


def test_unknown_ids_and_pending_sends_are_ignored(org, channel, template, broadcast):
    pending = broadcast_with_sends(org=org, channel=channel, template=template, count=1, status=SendStatus.PENDING)
    Send.objects.filter(broadcast=pending).update(message_id="wamid.pending")  # not SENT yet: not moved
    moved = sends_apply_statuses(
        statuses=parsed([status_entry("wamid.unknown", "delivered"), status_entry("wamid.pending", "read")])
    )
    assert moved == {}
    assert Send.objects.get(broadcast=pending).status == SendStatus.PENDING


def test_a_concurrent_move_is_not_overwritten(broadcast):
    # Given the send already moved to READ after our read of its status (simulated by the guarded UPDATE)
    from broadcasts.status_updates import folding, moves

    target = send(broadcast, 4)
    sends_update(Send.objects.filter(id=target.id), status=SendStatus.READ)
    items = [(target.id, folding.Fold(delivered_at=datetime.fromtimestamp(T0, tz=UTC)))]
    # When a DELIVERED update for it runs, then the WHERE guard leaves it READ
    assert moves.sends_move(SendStatus.DELIVERED, items, datetime.now(tz=UTC)) == []
    assert send(broadcast, 4).status == SendStatus.READ


def test_a_move_returns_the_status_before_and_moves_once(broadcast):
    from broadcasts.status_updates import folding, moves

    folds = folding.statuses_fold(parsed([status_entry(wamid(broadcast, i), "read", T0 + i) for i in range(3)]))
    items = [(send(broadcast, i).id, folds[wamid(broadcast, i)]) for i in range(3)]
    moved = moves.sends_move(SendStatus.READ, items, datetime.now(tz=UTC))
    assert sorted(moved) == sorted((i, SendStatus.SENT) for i, _ in items)  # (id, status before)
    assert moves.sends_move(SendStatus.READ, items, datetime.now(tz=UTC)) == []
    assert [send(broadcast, i).read_at for i in range(3)] == [datetime.fromtimestamp(T0 + i, tz=UTC) for i in range(3)]


def test_a_thousand_statuses_cost_a_few_queries(org, channel, template, django_assert_max_num_queries):
    # Given 1,000 SENT sends
    big = broadcast_with_sends(org=org, channel=channel, template=template, count=1000)
    delivered = [status_entry(f"wamid.{big.id}.{i}", "delivered", T0) for i in range(1000)]
    read = [status_entry(f"wamid.{big.id}.{i}", "read", T0 + 1) for i in range(500)]
    # When one body delivers all of them, then one SELECT, the broadcast's lock, one UPDATE and the kept counts' one
    # UPDATE do it
    with django_assert_max_num_queries(5):
        moved = sends_apply_statuses(statuses=parsed(delivered))
    assert len(moved[SendStatus.DELIVERED]) == 1000
    # And a mixed body of reads and repeated deliveries also stays small
    with django_assert_max_num_queries(5):
        moved = sends_apply_statuses(statuses=parsed(read + delivered))
    assert len(moved[SendStatus.READ]) == 500
    assert Send.objects.filter(broadcast=big, status=SendStatus.READ).count() == 500
    assert Send.objects.filter(broadcast=big, status=SendStatus.DELIVERED).count() == 500


@pytest.mark.django_db(transaction=True)
def test_concurrent_overlapping_bodies_neither_deadlock_nor_duplicate_events(org, channel, template, settings):
    # Given 400 SENT sends, a customer endpoint, and four threads applying shuffled overlapping bodies
    import random
    import threading

    from django.db import connection
    from django.db.models import Count

    from events import endpoints
    from events.models import Event

    settings.WEBHOOKS_ALLOW_PRIVATE = True
    endpoints.endpoint_create(organization=org, url="http://127.0.0.1:9/hooks")
    big = broadcast_with_sends(org=org, channel=channel, template=template, count=400)
    errors: list[str] = []

    def apply(seed: int) -> None:
        rnd = random.Random(seed)
        try:
            for _ in range(3):
                order = rnd.sample(range(400), 300)
                kinds = ("delivered", "read", "failed")
                body = [status_entry(wamid(big, i), rnd.choice(kinds), errors=[{"code": 131026}]) for i in order]
                sends_apply_statuses(statuses=parsed(body))
        except Exception as exc:  # noqa: BLE001 (collected and asserted below)
            errors.append(repr(exc))
        finally:
            connection.close()

    threads = [threading.Thread(target=apply, args=(seed,)) for seed in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Then nothing failed, and no send has two events of one type
    assert errors == []
    assert not Event.objects.values("ordering_key", "type").annotate(n=Count("id")).filter(n__gt=1).exists()
    moved = Send.objects.filter(broadcast=big).exclude(status=SendStatus.SENT).count()
    assert moved > 350 and Event.objects.count() >= moved
