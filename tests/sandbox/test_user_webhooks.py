"""The control API's webhooks of Meta's 2026 platform over real HTTP (sandbox.user_webhooks, sandbox.limits):
user_preferences and incoming messages naming a user by BSUID, and messaging limits given as tier names."""

import hashlib
import hmac

import pytest
import requests

from tests.sandbox.support import SECRET, TO, message, send

BSUID = "CO.13491208655302741918"
PHONE = "100000000000001"
WABA = "200000000000001"


@pytest.fixture
def hooked(sandbox, receiver):
    """A sandbox posting its webhooks, signed, to `receiver`, with one known business phone number."""
    sandbox.config(
        webhook_url=receiver.url,
        app_secret=SECRET,
        phone_numbers={PHONE: {"waba_id": WABA, "display_phone_number": "15550001111"}},
    )
    return sandbox


def assert_signed(receiver):
    assert receiver.posts
    for headers, body in receiver.posts:
        expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        assert hmac.compare_digest(headers["x-hub-signature-256"], expected)


def test_user_preferences_naming_only_a_user_id(hooked, receiver):
    # when a user with a username stops marketing messages, at a given time
    assert hooked.user_preferences(None, "stop", user_id=BSUID, timestamp=1_790_000_000) == 200

    # then Meta's user_preferences change names the user by BSUID only
    [(entry, value)] = receiver.changes("user_preferences")
    assert entry["id"] == WABA
    assert value["metadata"]["phone_number_id"] == PHONE
    [preference] = value["user_preferences"]
    assert preference == {
        "user_id": BSUID,
        "detail": "User requested to stop marketing messages",
        "category": "marketing_messages",
        "value": "stop",
        "timestamp": 1_790_000_000,
    }
    assert value["contacts"][0]["user_id"] == BSUID and "wa_id" not in value["contacts"][0]
    assert_signed(receiver)


def test_user_preferences_naming_both_or_the_number_only(hooked, receiver):
    hooked.user_preferences(TO, "resume", user_id=BSUID)
    hooked.user_preferences(TO, "stop")

    (_, both), (_, number_only) = receiver.changes("user_preferences")
    assert {k: both["user_preferences"][0][k] for k in ("wa_id", "user_id", "value")} == {
        "wa_id": "573001112233",
        "user_id": BSUID,
        "value": "resume",
    }
    assert number_only["user_preferences"][0]["wa_id"] == "573001112233"
    assert "user_id" not in number_only["user_preferences"][0]
    assert isinstance(number_only["user_preferences"][0]["timestamp"], int)


@pytest.mark.parametrize(
    "payload",
    [
        {"value": "stop"},  # nobody named
        {"user_id": "13491208655302741918", "value": "stop"},  # not a BSUID
        {"to": "", "value": "stop"},
        {"user_id": BSUID, "value": "pause"},
        {"user_id": BSUID, "value": "stop", "timestamp": "yesterday"},
    ],
)
def test_user_preferences_refuses_bad_input(hooked, receiver, payload):
    response = requests.post(f"{hooked.url}/_sandbox/user_preferences", json=payload, timeout=5)

    assert response.status_code == 400
    assert receiver.posts == []


def test_incoming_message_from_a_username_only_user(hooked, receiver):
    # when a user known only by BSUID writes
    answer = hooked.post_webhook("inbound-message", phone_number_id=PHONE, user_id=BSUID, text="hi")

    # then the messages change has contacts[].user_id, no wa_id and no from
    assert answer["status"] == 200
    [(_, value)] = receiver.changes("messages")
    [contact] = value["contacts"]
    assert contact["user_id"] == BSUID and "wa_id" not in contact
    assert contact["profile"]["username"]
    [incoming] = value["messages"]
    assert "from" not in incoming
    assert incoming["from_user_id"] == BSUID
    assert incoming["text"] == {"body": "hi"}
    assert_signed(receiver)


def test_incoming_message_naming_both_opens_the_window_for_either(hooked, receiver):
    # given a tier of 1 unique user, and a user who wrote naming both number and BSUID
    hooked.messaging_limits(limit=1, window_seconds=60)
    hooked.post_webhook("inbound-message", phone_number_id=PHONE, user_id=BSUID, **{"from": TO})
    [(_, value)] = receiver.changes("messages")
    assert (value["contacts"][0]["wa_id"], value["contacts"][0]["user_id"]) == ("573001112233", BSUID)
    assert (value["messages"][0]["from"], value["messages"][0]["from_user_id"]) == ("573001112233", BSUID)

    # when the business sends to that user by number and by BSUID
    send(hooked)
    body = {**message(), "recipient": BSUID}
    del body["to"]
    send(hooked, body)

    # then neither counts towards the messaging limit: the customer-service window is open
    assert hooked.messaging_limits()["portfolios"]["*"]["used"] == 0


@pytest.mark.parametrize(
    ("announced", "limit"),
    [("TIER_2K", 2000), ("TIER_UNLIMITED", None), (-1, None), ("-1", None), (10000, 10000), ("TIER_100K", 100000)],
)
def test_business_capability_update_with_a_tier(hooked, receiver, announced, limit):
    # given the WABA's own tier of 250
    hooked.messaging_limits(waba_id=WABA, limit=250, window_seconds=60)

    # when Meta's business_capability_update announces a tier
    answer = hooked.post_webhook("business-capability", waba_id=WABA, max_daily_conversations_per_business=announced)

    # then it is posted as given, signed, and the sandbox's own limit for that WABA follows it
    assert answer["status"] == 200
    [(entry, value)] = receiver.changes("business_capability_update")
    assert entry["id"] == WABA
    assert value == {"max_daily_conversations_per_business": announced}
    assert_signed(receiver)
    assert hooked.messaging_limits()["portfolios"][WABA]["limit"] == limit


def test_phone_number_quality_update_with_a_tier(hooked, receiver):
    answer = hooked.post_webhook(
        "phone-number-quality",
        phone_number_id=PHONE,
        event="UPGRADE",
        old_limit="TIER_250",
        current_limit="TIER_2K",
        max_daily_conversations_per_business="TIER_2K",
    )

    assert answer["status"] == 200
    [(entry, value)] = receiver.changes("phone_number_quality_update")
    assert entry["id"] == WABA
    assert value == {
        "event": "UPGRADE",
        "old_limit": "TIER_250",
        "current_limit": "TIER_2K",
        "max_daily_conversations_per_business": "TIER_2K",
        "display_phone_number": "15550001111",
    }
    assert hooked.messaging_limits()["portfolios"][WABA]["limit"] == 2000


@pytest.mark.parametrize(
    ("kind", "payload"),
    [
        ("business-capability", {"waba_id": WABA}),  # no limit at all
        ("business-capability", {"waba_id": WABA, "max_daily_conversations_per_business": "TIER_3K"}),
        ("business-capability", {"waba_id": WABA, "max_daily_conversations_per_business": 0}),
        ("business-capability", {"waba_id": WABA, "max_daily_conversations_per_business": True}),
        ("phone-number-quality", {"waba_id": WABA, "event": "UPGRADE", "max_daily_conversations_per_business": "x"}),
        ("inbound-message", {"phone_number_id": PHONE}),  # nobody wrote
        ("inbound-message", {"phone_number_id": PHONE, "user_id": "12345"}),
    ],
)
def test_account_and_user_webhooks_refuse_bad_input(hooked, receiver, kind, payload):
    response = requests.post(f"{hooked.url}/_sandbox/webhooks/{kind}", json=payload, timeout=5)

    assert response.status_code == 400
    assert receiver.posts == []


def test_user_id_lookup(sandbox):
    answer = requests.get(f"{sandbox.url}/_sandbox/user_id", params={"to": "+52 55 1234 5678"}, timeout=5).json()

    assert answer["to"] == "+525512345678"
    assert answer["wa_id"] == "5215512345678"
    assert answer["region"] == "MX"
    assert answer["user_id"].startswith("MX.") and answer["user_id"] == sandbox.user_id_of("+525512345678")
    assert requests.get(f"{sandbox.url}/_sandbox/user_id", timeout=5).status_code == 400
