"""Statuses matched safely (docs/rules.md): by biz_opaque_callback_data first, else by wamid; never another
channel's. Signed webhooks over real HTTP to the service (pytest-django's live server)."""

from datetime import UTC, datetime, timedelta

import orjson
import pytest
import requests
from django.utils import timezone

from broadcasts.models import Broadcast, Send, SendStatus
from broadcasts.selectors import sends_by_meta_number
from broadcasts.status_updates.apply import sends_apply_statuses
from templates_registry.models import Channel
from tests.broadcasts.counts_support import assert_counts_exact
from tests.events.helpers import broadcast_with_sends, meta_signature
from whatsapp.inbound.statuses import status_update_parse
from whatsapp.payload import callback_parse, callback_reference

pytestmark = pytest.mark.django_db(transaction=True)

SECRET = "matching-secret"
T0 = 1_790_000_000


@pytest.fixture
def other_channel(org) -> Channel:
    return Channel.objects.create(
        organization=org, phone_number_id="100000000000999", waba_id="200000000000001", access_token="t2", max_mps=80
    )


@pytest.fixture
def post_webhook(live_server, settings):
    settings.WHATSAPP_APP_SECRET = SECRET

    def post(statuses: list[dict], *, phone_number_id: str) -> None:
        envelope = {
            "object": "whatsapp_business_account",
            "entry": [
                {
                    "id": "200000000000001",
                    "changes": [
                        {
                            "field": "messages",
                            "value": {
                                "messaging_product": "whatsapp",
                                "metadata": {"display_phone_number": "15550000000", "phone_number_id": phone_number_id},
                                "statuses": statuses,
                            },
                        }
                    ],
                }
            ],
        }
        body = orjson.dumps(envelope)
        response = requests.post(
            f"{live_server.url}/v1/webhooks/whatsapp",
            data=body,
            headers={"Content-Type": "application/json", "X-Hub-Signature-256": meta_signature(body, SECRET)},
            timeout=10,
        )
        assert response.status_code == 200, response.content

    return post


def status(wamid: str, word: str, *, callback: str | None = None, at: int = T0) -> dict:
    entry = {"id": wamid, "status": word, "timestamp": str(at), "recipient_id": "34600000000"}
    if callback is not None:
        entry["biz_opaque_callback_data"] = callback
    return entry


def unknown_outcome(broadcast: Broadcast, index: int, **changes) -> Send:
    """The send as the sweeper leaves it after a worker was killed with its POST out: PENDING, counted, waiting."""
    values = {
        "attempts": 1,
        "unknown_outcomes": 1,
        "next_attempt_at": timezone.now() + timedelta(seconds=60),
        **changes,
    }
    Send.objects.filter(broadcast=broadcast, index=index).update(**values)
    return Send.objects.get(broadcast=broadcast, index=index)


def test_callback_reference_round_trips_and_refuses_anything_else():
    ref = callback_reference("65f0c0ffee0000000000abcd", 4999)
    assert ref == "65f0c0ffee0000000000abcd:4999"
    assert callback_parse(ref) == ("65f0c0ffee0000000000abcd", 4999)
    for other in ("", "abc", "x:", ":3", "b:-1", "b:1.5", "b:99999999999", "a" * 30 + ":1"):
        assert callback_parse(other) is None, other


def test_sent_status_with_callback_data_settles_an_unknown_outcome_whose_wamid_we_never_stored(
    org, channel, template, post_webhook
):
    # Given a send whose answer was lost (PENDING, one unknown outcome, waiting out the grace) and no wamid stored
    broadcast = broadcast_with_sends(org=org, channel=channel, template=template, count=3, status=SendStatus.PENDING)
    lost = unknown_outcome(broadcast, 1)
    assert lost.message_id is None

    # When Meta's `sent` status arrives with its callback data and a wamid no send carries
    post_webhook(
        [status("wamid.NEW1", "sent", callback=callback_reference(broadcast.id, 1))],
        phone_number_id=channel.phone_number_id,
    )

    # Then the send is SENT with that wamid, its retry time cleared (never posted again), the counts moved
    lost.refresh_from_db()
    assert (lost.status, lost.message_id, lost.next_attempt_at) == (SendStatus.SENT, "wamid.NEW1", None)
    assert lost.sent_at == datetime.fromtimestamp(T0, tz=UTC)
    assert lost.unknown_outcomes == 1  # still counted: the attempt's outcome was unknown
    assert assert_counts_exact(broadcast)[broadcast.id]["sent"] == 1
    # And the others did not move
    assert set(Send.objects.filter(broadcast=broadcast).exclude(id=lost.id).values_list("status", flat=True)) == {
        SendStatus.PENDING
    }


def test_a_later_status_moves_a_timed_out_failure_forward_and_a_second_wamid_reaches_the_same_send(
    org, channel, template, post_webhook
):
    # Given a send FAILED `timeout` after its 6th attempt (the outcomes unknown), no wamid stored
    broadcast = broadcast_with_sends(org=org, channel=channel, template=template, count=2, status=SendStatus.PENDING)
    unknown_outcome(
        broadcast,
        0,
        status=SendStatus.FAILED,
        attempts=6,
        unknown_outcomes=6,
        next_attempt_at=None,
        error_code="timeout",
        error_message="No answer",
        error_retryable=True,
        failed_at=timezone.now(),
    )
    Broadcast.objects.filter(id=broadcast.id).update(pending=1, failed=1)
    ref = callback_reference(broadcast.id, 0)

    # When a `delivered` status carrying its callback data arrives (Meta had taken one of the POSTs)
    post_webhook([status("wamid.A", "delivered", callback=ref)], phone_number_id=channel.phone_number_id)

    # Then it is DELIVERED with that wamid, its error cleared
    send = Send.objects.get(broadcast=broadcast, index=0)
    assert (send.status, send.message_id, send.error_code, send.error_retryable) == (
        SendStatus.DELIVERED,
        "wamid.A",
        "",
        None,
    )
    assert send.delivered_at == datetime.fromtimestamp(T0, tz=UTC)

    # And a status of another of its POSTs that Meta also took (another wamid, same callback data) reaches it too
    post_webhook([status("wamid.B", "read", callback=ref, at=T0 + 5)], phone_number_id=channel.phone_number_id)
    send.refresh_from_db()
    assert (send.status, send.message_id) == (SendStatus.READ, "wamid.A")
    counts = assert_counts_exact(broadcast)[broadcast.id]
    assert (counts["read"], counts["failed"], counts["pending"]) == (1, 0, 1)


def test_a_status_from_another_channels_number_changes_nothing(org, channel, template, other_channel, post_webhook):
    # Given a SENT send with a wamid and a PENDING one whose outcome is unknown, both on `channel`
    broadcast = broadcast_with_sends(org=org, channel=channel, template=template, count=2, status=SendStatus.SENT)
    Send.objects.filter(broadcast=broadcast, index=1).update(status=SendStatus.PENDING, message_id=None)
    Broadcast.objects.filter(id=broadcast.id).update(sent=1, pending=1)
    unknown_outcome(broadcast, 1)
    sent_wamid = f"wamid.{broadcast.id}.0"
    before = list(Send.objects.filter(broadcast=broadcast).order_by("index").values())

    # When statuses naming them (by wamid, by callback data) come from another channel's phone number
    post_webhook(
        [
            status(sent_wamid, "read"),
            status("wamid.X", "delivered", callback=callback_reference(broadcast.id, 1)),
        ],
        phone_number_id=other_channel.phone_number_id,
    )
    # and from a number that is none of ours
    post_webhook([status(sent_wamid, "delivered")], phone_number_id="999")

    # Then nothing changed at all
    assert list(Send.objects.filter(broadcast=broadcast).order_by("index").values()) == before
    assert_counts_exact(broadcast)

    # While the same statuses from the send's own channel apply
    post_webhook(
        [status(sent_wamid, "read"), status("wamid.X", "delivered", callback=callback_reference(broadcast.id, 1))],
        phone_number_id=channel.phone_number_id,
    )
    assert list(Send.objects.filter(broadcast=broadcast).order_by("index").values_list("status", "message_id")) == [
        (SendStatus.READ, sent_wamid),
        (SendStatus.DELIVERED, "wamid.X"),
    ]
    assert_counts_exact(broadcast)


def test_callback_data_that_names_no_send_falls_back_to_the_wamid(org, channel, template, post_webhook):
    broadcast = broadcast_with_sends(org=org, channel=channel, template=template, count=1, status=SendStatus.SENT)
    wamid = f"wamid.{broadcast.id}.0"
    post_webhook(
        [status(wamid, "delivered", callback="someone-else:7"), status(wamid, "read", callback="free text")],
        phone_number_id=channel.phone_number_id,
    )
    assert Send.objects.get(broadcast=broadcast).status == SendStatus.READ


def test_settled_sends_are_never_moved_backwards_nor_twice(org, channel, template):
    # Given a send settled by a `read` status through its callback data
    broadcast = broadcast_with_sends(org=org, channel=channel, template=template, count=1, status=SendStatus.PENDING)
    unknown_outcome(broadcast, 0)
    ref = callback_reference(broadcast.id, 0)

    def apply(entries):
        return sends_apply_statuses(
            statuses=[status_update_parse(e, phone_number_id=channel.phone_number_id) for e in entries]
        )

    moved = apply([status("wamid.R", "read", callback=ref, at=T0 + 3), status("wamid.R", "sent", callback=ref)])
    assert moved[SendStatus.SENT] and moved[SendStatus.READ]
    # When the same body comes again, and a late `sent` / `delivered` after it
    assert apply([status("wamid.R", "read", callback=ref, at=T0 + 3)]) == {}
    assert apply([status("wamid.R", "sent", callback=ref), status("wamid.R", "delivered", callback=ref)]) == {}
    # Then it stays READ, counted once
    send = Send.objects.get(broadcast=broadcast)
    assert (send.status, send.message_id) == (SendStatus.READ, "wamid.R")
    assert assert_counts_exact(broadcast)[broadcast.id]["read"] == 1


def test_a_body_of_a_thousand_callback_statuses_costs_a_fixed_number_of_queries(
    org, channel, template, django_assert_max_num_queries
):
    # Given 1,000 sends whose outcomes are unknown
    broadcast = broadcast_with_sends(org=org, channel=channel, template=template, count=1000, status=SendStatus.PENDING)
    Send.objects.filter(broadcast=broadcast).update(attempts=1, unknown_outcomes=1)
    updates = [
        status_update_parse(
            status(f"wamid.C{i}", "delivered", callback=callback_reference(broadcast.id, i)),
            phone_number_id=channel.phone_number_id,
        )
        for i in range(1000)
    ]
    # When one body settles and delivers them all: the callback probe, the channels, the lock, the settle, its
    # counts, the customer endpoints, then the wamid path (probe, channels, lock, UPDATE, counts), and savepoints:
    # a fixed number, none per status
    with django_assert_max_num_queries(15):
        moved = sends_apply_statuses(statuses=updates)
    assert len(moved[SendStatus.SENT]) == len(moved[SendStatus.DELIVERED]) == 1000
    assert assert_counts_exact(broadcast)[broadcast.id]["delivered"] == 1000


def test_numbers_meta_sends_back_match_the_stored_wa_id_first_then_the_e164_number(org, channel, template):
    # Given a Mexican send Meta answered with its old-style wa_id, and sends never answered (no wa_id)
    broadcast = broadcast_with_sends(org=org, channel=channel, template=template, count=4, status=SendStatus.PENDING)
    sends = list(Send.objects.filter(broadcast=broadcast).order_by("index"))
    Send.objects.filter(id=sends[0].id).update(to="+525512345678", wa_id="5215512345678")
    Send.objects.filter(id=sends[1].id).update(to="+5491155550000")
    Send.objects.filter(id=sends[2].id).update(to="+5592981723241")
    Send.objects.filter(id=sends[3].id).update(to="+573001112233", wa_id="573001112299")  # Meta said otherwise

    def ids(number: str) -> set[int]:
        return set(sends_by_meta_number(numbers=[number]).values_list("id", flat=True))

    assert ids("5215512345678") == {sends[0].id}  # through the stored wa_id
    assert ids("525512345678") == set()  # the E.164 digits: that send has a wa_id, which is authoritative
    assert ids("5491155550000") == {sends[1].id}  # no wa_id yet: as E.164
    assert ids("559281723241") == {sends[2].id}  # Brazil's wa_id without the ninth digit
    assert ids("573001112233") == set()
    assert ids("573001112299") == {sends[3].id}
    assert sends_by_meta_number(numbers=["5215512345678"], channel_id="other").count() == 0
