"""The messaging limit's rule module against real PostgreSQL and Redis (docs/rules.md), its webhooks and command."""

import hashlib
import hmac
import time
from datetime import timedelta

import orjson
import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from broadcasts.models import CustomerWindow, Send
from broadcasts.rules import customer_windows, limit_tiers, messaging_limit
from broadcasts.status_updates.inbound import webhook_payload_process
from core.redis import redis_client
from tests.delivery_support import broadcast_make, numbers
from tokens.models import Organization
from whatsapp.inbound.envelope import limits_parse
from whatsapp.inbound.limits import BusinessCapabilityUpdate, PhoneNumberQualityUpdate
from whatsapp.inbound.users import InboundMessage

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _flush_redis():
    redis_client().flushdb()
    yield


def limit(org, n):
    limit_tiers.organization_limit_set(organization_id=org.id, limit=n)


def admit(org, channel, batch):
    return messaging_limit.admit(organization_id=org.id, channel_id=channel.id, numbers=batch, now=timezone.now())


def test_an_unlimited_organization_makes_no_redis_call(org, channel, monkeypatch):
    monkeypatch.setattr(messaging_limit, "_script", lambda source: pytest.fail("Redis called"))
    assert admit(org, channel, numbers(5)) is None
    assert messaging_limit.outlook(
        organization_id=org.id, channel_id=channel.id, numbers=numbers(3), now=timezone.now()
    ) == {
        "limit": None,
        "used": None,
        "would_wait": 0,
    }


def test_admits_up_to_the_limit_then_waits_until_the_oldest_leaves(org, channel, settings):
    settings.MESSAGING_LIMIT_WINDOW_SECONDS = 30
    limit(org, 250)
    first = admit(org, channel, numbers(200))
    assert first == [0.0] * 200
    second = admit(org, channel, numbers(100, start=200))
    assert second[:50] == [0.0] * 50
    waits = second[50:]
    # Each waiter waits for the window to free room: about the window (plus the post margin), never 0.
    assert all(25 < w <= 30 + messaging_limit.POST_MARGIN_SECONDS + 0.1 for w in waits)
    # Counted numbers pass freely, and count once (admitted again: no second entry).
    assert admit(org, channel, numbers(250)) == [0.0] * 250
    assert (
        redis_client().zcard(
            messaging_limit._keys(org.id, messaging_limit.limit_state(organization_id=org.id).generation)[0]
        )
        == 250
    )


def test_duplicates_in_one_batch_count_once(org, channel):
    limit(org, 250)
    batch = ["+34612000001"] * 3 + numbers(249, start=10)
    assert admit(org, channel, batch) == [0.0] * len(batch)


def test_open_customer_windows_pass_without_counting(org, channel):
    limit(org, 250)
    admit(org, channel, numbers(250))
    writer = "+34699999999"
    customer_windows.customer_windows_record(channel_id=channel.id, inbound=[(writer, timezone.now())])
    assert admit(org, channel, [writer, "+34699999998"])[0] == 0.0
    assert admit(org, channel, ["+34699999998"])[0] > 0
    # An old inbound (beyond the customer-service window) opens nothing.
    old = "+34699999997"
    customer_windows.customer_windows_record(channel_id=channel.id, inbound=[(old, timezone.now() - timedelta(days=2))])
    assert admit(org, channel, [old])[0] > 0


def test_a_flushed_redis_is_rebuilt_from_the_sends_posted_in_the_window(org, channel, template):
    limit(org, 250)
    broadcast = broadcast_make(channel=channel, template=template, recipients=numbers(250))
    broadcast.status = "IN_PROGRESS"
    broadcast.started_at = timezone.now()
    broadcast.save()
    Send.objects.filter(broadcast=broadcast).update(status="SENT", sent_at=timezone.now() - timedelta(hours=1))
    # Redis is empty (flushed): the count comes back from PostgreSQL before anything is admitted.
    waits = admit(org, channel, ["+34600000001"])
    assert waits[0] > 3600
    assert admit(org, channel, numbers(10)) == [0.0] * 10  # counted already
    # A send posted outside the window does not count.
    Send.objects.filter(broadcast=broadcast).update(sent_at=timezone.now() - timedelta(days=2))
    limit(org, 2000)  # a new limit: a fresh count from the rows
    assert admit(org, channel, ["+34600000001"]) == [0.0]


def test_a_rebuild_does_not_count_the_batch_being_admitted(org, channel, template):
    # Given 300 numbers posted in the window, then the limit lowered to 250 (a fresh count from PostgreSQL)
    limit(org, 2000)
    first = broadcast_make(channel=channel, template=template, recipients=numbers(300))
    second = broadcast_make(channel=channel, template=template, recipients=numbers(100, start=1000))
    for broadcast in (first, second):
        broadcast.status = "IN_PROGRESS"
        broadcast.started_at = timezone.now()
        broadcast.save()
    Send.objects.filter(broadcast=first).update(status="SENT", sent_at=timezone.now())
    limit(org, 250)
    # When a batch of new numbers, marked posting by the engine's posting gate, is admitted
    Send.objects.filter(broadcast=second).update(posting_at=timezone.now())
    batch = list(Send.objects.filter(broadcast=second).order_by("id").values_list("id", "to"))
    waits = messaging_limit.admit(
        organization_id=org.id,
        channel_id=channel.id,
        numbers=[to for _, to in batch],
        now=timezone.now(),
        batch_ids=[send_id for send_id, _ in batch],
    )
    # Then every one waits: the rebuild counted the 300 posted, not the batch itself
    assert all(wait > 0 for wait in waits)
    # ... while a send being posted by another batch does count (over-counting, never under-counting)
    redis_client().flushdb()
    assert admit(org, channel, numbers(100, start=1000)) == [0.0] * 100


def test_outlook_reports_limit_used_and_would_wait(org, channel):
    limit(org, 250)
    admit(org, channel, numbers(200))
    out = messaging_limit.outlook(
        organization_id=org.id, channel_id=channel.id, numbers=numbers(100, start=150), now=timezone.now()
    )
    # 150..249: 50 counted already, 50 new, room for 50: none would wait.
    assert out == {"limit": 250, "used": 200, "would_wait": 0}
    out = messaging_limit.outlook(
        organization_id=org.id, channel_id=channel.id, numbers=numbers(120, start=150), now=timezone.now()
    )
    # 150..269: 50 counted already, 70 new, room for 50: 20 would wait.
    assert out == {"limit": 250, "used": 200, "would_wait": 20}
    assert (
        customer_windows.customer_windows_open(channel_id=channel.id, numbers=numbers(3), now=timezone.now()) == set()
    )


def test_room_free_in_follows_the_oldest_entries(org, channel, settings):
    settings.MESSAGING_LIMIT_WINDOW_SECONDS = 20
    limit(org, 250)
    admit(org, channel, numbers(250))
    free = messaging_limit.room_free_in(organization_id=org.id, count=10, now=timezone.now())
    assert 15 < free <= 20 + messaging_limit.POST_MARGIN_SECONDS
    later = messaging_limit.room_free_in(organization_id=org.id, count=600, now=timezone.now())
    assert later > free + 20  # beyond one window's room: the next window too


@pytest.mark.parametrize(
    "raw,expected",
    [
        ("250", 250),
        (2000, 2000),
        ("unlimited", None),
        (None, None),
        (-1, None),
        ("TIER_10K", 10000),
        ("TIER_UNLIMITED", None),
    ],
)
def test_limit_parse(raw, expected):
    assert limit_tiers.limit_parse(raw) == expected


@pytest.mark.parametrize("raw", ["300", "abc", True, 1000, "TIER_1K", "TIER_5K", "TIER_50"])
def test_limit_parse_refuses_what_is_not_a_tier(raw):
    with pytest.raises(limit_tiers.InvalidLimit):
        limit_tiers.limit_parse(raw)


def test_create_channel_sets_the_limit_and_refuses_a_bad_one(db, capsys):
    args = [
        "--org",
        "Lim",
        "--phone-number-id",
        "100000000000099",
        "--waba-id",
        "200000000000099",
        "--access-token",
        "T",
    ]
    call_command("create_channel", *args, "--messaging-limit", "2000")
    assert Organization.objects.get(name="Lim").messaging_limit == 2000
    with pytest.raises(CommandError, match="250, 2000, 10000, 100000, unlimited or a tier name"):
        call_command(
            "create_channel",
            "--org",
            "Lim2",
            "--phone-number-id",
            "1",
            "--waba-id",
            "2",
            "--access-token",
            "T",
            "--messaging-limit",
            "300",
        )
    assert not Organization.objects.filter(name="Lim2").exists()
    call_command(
        "create_channel",
        "--org",
        "Lim",
        "--phone-number-id",
        "100000000000098",
        "--waba-id",
        "2",
        "--access-token",
        "T",
        "--messaging-limit",
        "unlimited",
    )
    assert Organization.objects.get(name="Lim").messaging_limit is None


def envelope(waba_id, field, value):
    return {
        "object": "whatsapp_business_account",
        "entry": [{"id": waba_id, "time": int(time.time()), "changes": [{"field": field, "value": value}]}],
    }


def test_limits_parse_reads_meta_shapes():
    items = limits_parse(
        envelope(
            "W",
            "business_capability_update",
            {"max_daily_conversation_per_phone": 1000, "max_phone_numbers_per_business": 2},
        )
    )
    assert items == [
        BusinessCapabilityUpdate(
            waba_id="W", messaging_limit=1000, max_phone_numbers_per_business=2, timestamp=items[0].timestamp
        )
    ]
    quality = limits_parse(
        envelope(
            "W",
            "phone_number_quality_update",
            {"display_phone_number": "15550783881", "event": "THROUGHPUT_UPGRADE", "current_limit": "TIER_UNLIMITED"},
        )
    )[0]
    assert isinstance(quality, PhoneNumberQualityUpdate) and quality.messaging_tier == ""  # throughput, not the limit
    quality = limits_parse(
        envelope(
            "W",
            "phone_number_quality_update",
            {
                "display_phone_number": "1",
                "event": "UPGRADE",
                "current_limit": "TIER_10K",
                "max_daily_conversations_per_business": "TIER_2K",
            },
        )
    )[0]
    assert quality.messaging_tier == "TIER_2K"
    inbound = limits_parse(
        envelope(
            "W",
            "messages",
            {
                "metadata": {"phone_number_id": "P"},
                "messages": [{"from": "5215512345678", "timestamp": "1700000000"}, "bad", {"id": "x"}],
            },
        )
    )
    assert [type(i) for i in inbound] == [InboundMessage] and inbound[0].wa_id == "5215512345678"


def test_webhooks_set_the_limit_store_number_health_and_open_windows(org, channel):
    webhook_payload_process(
        payload=envelope(channel.waba_id, "business_capability_update", {"max_daily_conversations_per_business": 10000})
    )
    org.refresh_from_db()
    assert org.messaging_limit == 10000 and org.messaging_limit_set_at is not None
    webhook_payload_process(
        payload=envelope(channel.waba_id, "business_capability_update", {"max_daily_conversations_per_business": -1})
    )
    org.refresh_from_db()
    assert org.messaging_limit is None
    webhook_payload_process(
        payload=envelope(
            channel.waba_id,
            "phone_number_quality_update",
            {
                "display_phone_number": "15550783881",
                "event": "FLAGGED",
                "max_daily_conversations_per_business": "TIER_250",
            },
        )
    )
    org.refresh_from_db()
    channel.refresh_from_db()
    assert org.messaging_limit == 250
    assert (channel.quality_event, channel.quality_limit_tier) == ("FLAGGED", "TIER_250")
    value = {
        "metadata": {"phone_number_id": channel.phone_number_id},
        "messages": [{"from": "5215512345678", "timestamp": str(int(time.time()))}],
    }
    webhook_payload_process(payload=envelope(channel.waba_id, "messages", value))
    webhook_payload_process(payload=envelope(channel.waba_id, "messages", value))  # again: one row
    # Meta's Mexican wa_id (a 1 after 52) opens the window of the E.164 number it stands for, the only valid reading
    assert set(CustomerWindow.objects.values_list("number", flat=True)) == {"+525512345678"}
    assert customer_windows.customer_windows_open(
        channel_id=channel.id, numbers=["+525512345678", "+34600000000"], now=timezone.now()
    ) == {"+525512345678"}


def test_signed_webhook_through_the_endpoint(client, org, channel, settings):
    settings.WHATSAPP_APP_SECRET = "s3cret"
    body = orjson.dumps(
        envelope(channel.waba_id, "business_capability_update", {"max_daily_conversations_per_business": 2000})
    )
    signature = "sha256=" + hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    response = client.post(
        "/v1/webhooks/whatsapp", data=body, content_type="application/json", HTTP_X_HUB_SIGNATURE_256=signature
    )
    assert response.status_code == 200
    org.refresh_from_db()
    assert org.messaging_limit == 2000
