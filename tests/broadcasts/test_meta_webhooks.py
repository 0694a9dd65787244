"""The receiver of Meta's webhooks (broadcasts/api/meta_webhooks.py): handshake, signatures, statuses, other
envelopes, and the routing of broadcasts/status_updates/inbound.py.

Template updates: tests/templates_registry/test_template_status_updates.py."""

import orjson
import pytest

from broadcasts.models import Send, SendStatus
from tests.broadcasts.counts_support import sends_update
from tests.events.helpers import broadcast_with_sends, meta_envelope, meta_signature, status_entry

URL = "/v1/webhooks/whatsapp"
SECRET = "meta-app-secret"


@pytest.fixture(autouse=True)
def _meta_settings(settings):
    settings.WHATSAPP_APP_SECRET = SECRET
    settings.WHATSAPP_VERIFY_TOKEN = "verify-me"


def post_signed(client, payload, secret=SECRET, raw: bytes | None = None):
    body = raw if raw is not None else orjson.dumps(payload)
    return client.post(
        URL, data=body, content_type="application/json", HTTP_X_HUB_SIGNATURE_256=meta_signature(body, secret)
    )


# --- handshake -------------------------------------------------------------------------------


def test_handshake_echoes_the_challenge_as_plain_text(client):
    response = client.get(
        URL, {"hub.mode": "subscribe", "hub.verify_token": "verify-me", "hub.challenge": "1158201444"}
    )
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    assert response.content == b"1158201444"


@pytest.mark.parametrize(
    "params",
    [
        {"hub.mode": "subscribe", "hub.verify_token": "wrong", "hub.challenge": "1"},
        {"hub.mode": "unsubscribe", "hub.verify_token": "verify-me", "hub.challenge": "1"},
        {"hub.challenge": "1"},
    ],
)
def test_handshake_refuses_a_wrong_token_or_mode(client, params):
    response = client.get(URL, params)
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "forbidden"


def test_handshake_refused_when_no_verify_token_is_configured(client, settings):
    settings.WHATSAPP_VERIFY_TOKEN = ""
    response = client.get(URL, {"hub.mode": "subscribe", "hub.verify_token": "", "hub.challenge": "1"})
    assert response.status_code == 403


# --- signatures ------------------------------------------------------------------------------


@pytest.fixture
def broadcast(org, channel, template):
    return broadcast_with_sends(org=org, channel=channel, template=template, count=3)


def _delivered_body(broadcast):
    return meta_envelope(statuses=[status_entry(f"wamid.{broadcast.id}.0", "delivered")])


def test_valid_signature_applies_the_statuses(client, broadcast):
    response = post_signed(client, _delivered_body(broadcast))
    assert response.status_code == 200
    assert Send.objects.get(broadcast=broadcast, index=0).status == SendStatus.DELIVERED


@pytest.mark.parametrize(
    "header",
    [None, "", "sha256=", "sha256=" + "0" * 64, "sha1=abc", "md5=whatever"],
)
def test_missing_or_wrong_signature_is_403_and_changes_nothing(client, broadcast, header):
    body = orjson.dumps(_delivered_body(broadcast))
    extra = {} if header is None else {"HTTP_X_HUB_SIGNATURE_256": header}
    response = client.post(URL, data=body, content_type="application/json", **extra)
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "invalid_signature"
    assert not Send.objects.filter(broadcast=broadcast).exclude(status=SendStatus.SENT).exists()


def test_signature_with_another_secret_is_refused(client, broadcast):
    response = post_signed(client, _delivered_body(broadcast), secret="not-the-app-secret")
    assert response.status_code == 403
    assert Send.objects.get(broadcast=broadcast, index=0).status == SendStatus.SENT


def test_signature_is_checked_on_the_raw_bytes(client, broadcast):
    # Given a body signed as sent, then re-serialized with different whitespace
    body = orjson.dumps(_delivered_body(broadcast))
    signature = meta_signature(body, SECRET)
    tampered = body.replace(b":", b": ")
    # When it arrives with the original signature, then it is refused although the JSON is equal
    response = client.post(URL, data=tampered, content_type="application/json", HTTP_X_HUB_SIGNATURE_256=signature)
    assert response.status_code == 403


def test_everything_refused_when_the_app_secret_is_unset(client, broadcast, settings):
    settings.WHATSAPP_APP_SECRET = ""
    body = orjson.dumps(_delivered_body(broadcast))
    response = client.post(
        URL, data=body, content_type="application/json", HTTP_X_HUB_SIGNATURE_256=meta_signature(body, "")
    )
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "forbidden"
    assert Send.objects.get(broadcast=broadcast, index=0).status == SendStatus.SENT


def test_invalid_json_with_a_valid_signature_is_400(client):
    response = post_signed(client, None, raw=b'{"entry": [')
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_json"


def test_json_that_is_not_an_object_is_400(client):
    response = post_signed(client, None, raw=b"[1, 2]")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "validation_error"


@pytest.mark.parametrize(
    "payload",
    [
        {},
        {"entry": "x"},
        {"entry": [None, 1, {"changes": "x"}, {"changes": [None, {"field": "messages", "value": []}]}]},
        {
            "entry": [
                {"changes": [{"field": "messages", "value": {"statuses": [None, 5, {"id": 7}, {"status": "read"}]}}]}
            ]
        },
        {"entry": [{"changes": [{"field": "messages", "value": {"statuses": "nope"}}]}]},
    ],
)
def test_malformed_envelopes_are_acknowledged_not_500(db, client, payload):
    assert post_signed(client, payload).status_code == 200


def test_no_token_auth_and_no_csrf_needed(broadcast):
    from django.test import Client

    csrf_client = Client(enforce_csrf_checks=True)
    response = post_signed(csrf_client, _delivered_body(broadcast))
    assert response.status_code == 200


# --- other envelopes ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        (
            "messages",
            {
                "messaging_product": "whatsapp",
                "contacts": [{"wa_id": "34600"}],
                "messages": [{"id": "wamid.in", "type": "text", "text": {"body": "hola"}}],
            },
        ),
        ("account_update", {"phone_number": "15550000000", "event": "VERIFIED_ACCOUNT"}),
        (
            "user_preferences",
            {"user_preferences": [{"wa_id": "34600", "category": "marketing_messages", "value": "stop"}]},
        ),
        ("calls", {"calls": [{"id": "wacid.x", "event": "connect"}]}),
        ("phone_number_quality_update", {"event": "FLAGGED", "current_limit": "TIER_1K"}),
    ],
)
def test_other_envelopes_are_acknowledged_and_ignored(client, broadcast, field, value):
    response = post_signed(client, meta_envelope(field=field, value=value))
    assert response.status_code == 200
    assert not Send.objects.filter(broadcast=broadcast).exclude(status=SendStatus.SENT).exists()


# --- statuses that arrive before their wamid is stored -------------------------------------------


def test_a_status_that_beats_its_wamid_is_applied_by_the_sweeper(client, org, channel, template):
    from datetime import timedelta

    from django.utils import timezone

    from broadcasts.models import UnmatchedStatus
    from broadcasts.status_updates.unmatched import unmatched_statuses_retry

    # Given a send whose Graph answer is not recorded yet, and Meta's read webhook for it
    early = broadcast_with_sends(org=org, channel=channel, template=template, count=1, status=SendStatus.PENDING)
    envelope = meta_envelope(
        statuses=[
            status_entry("wamid.early", "delivered"),
            status_entry("wamid.early", "read"),
            status_entry("wamid.x", "sent"),
        ]
    )
    assert post_signed(client, envelope).status_code == 200
    assert UnmatchedStatus.objects.count() == 2  # Meta's "sent" moves nothing and is not kept
    # When the delivery engine records the wamid, and the sweeper runs
    sends_update(Send.objects.filter(broadcast=early), status=SendStatus.SENT, message_id="wamid.early")
    assert unmatched_statuses_retry() == 2
    # Then the send is READ and nothing is kept
    assert Send.objects.get(broadcast=early).status == SendStatus.READ
    assert not UnmatchedStatus.objects.exists()
    # And statuses of ids that never appear are dropped after ten minutes
    post_signed(client, meta_envelope(statuses=[status_entry("wamid.never", "delivered")]))
    assert unmatched_statuses_retry() == 0
    assert UnmatchedStatus.objects.count() == 1
    unmatched_statuses_retry(now=timezone.now() + timedelta(minutes=11))
    assert not UnmatchedStatus.objects.exists()


def test_other_methods_are_405_in_the_envelope(client):
    response = client.delete(URL)
    assert response.status_code == 405
    assert response.json()["error"]["code"] == "method_not_allowed"
    assert response["Allow"] == "GET, POST"


def test_a_body_over_10_mib_is_413_in_the_envelope(client):
    body = b'{"entry": "' + b"x" * (10 * 1024 * 1024 + 10) + b'"}'
    response = client.post(
        URL, data=body, content_type="application/json", HTTP_X_HUB_SIGNATURE_256=meta_signature(body, SECRET)
    )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"


def test_a_deadlocked_body_is_retried(db, monkeypatch, broadcast):
    # Given the first attempt to apply a body loses a deadlock
    from django.db import OperationalError

    from broadcasts.status_updates import inbound

    real = inbound.sends_apply_statuses
    calls = []

    class DeadlockDetected(Exception):
        sqlstate = "40P01"

    def flaky(**kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise OperationalError("deadlock detected") from DeadlockDetected()
        return real(**kwargs)

    monkeypatch.setattr(inbound, "sends_apply_statuses", flaky)
    # When it is processed, then the second attempt applies it
    result = inbound.webhook_payload_process(payload=_delivered_body(broadcast))
    assert len(calls) == 2 and result.sends_moved == {"DELIVERED": 1}
    assert Send.objects.get(broadcast=broadcast, index=0).status == SendStatus.DELIVERED


def test_other_database_errors_are_not_retried(db, monkeypatch, broadcast):
    from django.db import OperationalError

    from broadcasts.status_updates import inbound

    def broken(**kwargs):
        raise OperationalError("connection lost")

    monkeypatch.setattr(inbound, "sends_apply_statuses", broken)
    with pytest.raises(OperationalError):
        inbound.webhook_payload_process(payload=_delivered_body(broadcast))


# --- the channel check: a status proves something only of a send of the channel it names ------------------------


def _statuses_from(statuses, phone_number_id):
    body = meta_envelope(statuses=statuses)
    metadata = {"display_phone_number": "15550000000"}
    if phone_number_id is not None:
        metadata["phone_number_id"] = phone_number_id
    body["entry"][0]["changes"][0]["value"]["metadata"] = metadata
    return body


@pytest.mark.parametrize("named", ["missing", "empty", "other channel", "none of ours"])
def test_a_status_not_naming_its_sends_channel_changes_nothing(client, org, other_org, channel, template, named):
    # Given SENT sends (wamids) and one PENDING whose outcome is unknown (matched by its callback data), on `channel`
    from broadcasts.models import Broadcast
    from broadcasts.rules.suppressions import suppression_get
    from templates_registry.models import Channel
    from whatsapp.payload import callback_reference

    broadcast = broadcast_with_sends(org=org, channel=channel, template=template, count=3)
    Send.objects.filter(broadcast=broadcast, index=2).update(
        status=SendStatus.PENDING, message_id=None, attempts=1, unknown_outcomes=1
    )
    Broadcast.objects.filter(id=broadcast.id).update(sent=2, pending=1)
    other = Channel.objects.create(
        organization=other_org, phone_number_id="100000000000555", waba_id="2555", access_token="t"
    )
    phone = {"missing": None, "empty": "", "other channel": other.phone_number_id, "none of ours": "999"}[named]
    statuses = [
        status_entry(f"wamid.{broadcast.id}.0", "read", recipient_user_id="CO.1234567890"),
        status_entry(
            f"wamid.{broadcast.id}.1",
            "failed",
            errors=[{"code": 131050, "title": "User stopped marketing"}],
            pricing={"billable": True, "category": "marketing", "pricing_model": "PMP", "type": "regular"},
        ),
        status_entry("wamid.NEW", "delivered", biz_opaque_callback_data=callback_reference(broadcast.id, 2)),
    ]
    before = list(Send.objects.filter(broadcast=broadcast).order_by("index").values())
    # When a signed body names them from another number, or from none: answered 2xx
    response = post_signed(client, _statuses_from(statuses, phone))
    assert response.status_code == 200
    # Then nothing changed: no move, no settle, no bill, no BSUID, no suppression
    assert list(Send.objects.filter(broadcast=broadcast).order_by("index").values()) == before
    assert suppression_get(organization_id=org.id, to=before[1]["to"]) is None
    # While the same body from the sends' own channel applies
    assert post_signed(client, _statuses_from(statuses, channel.phone_number_id)).status_code == 200
    assert list(Send.objects.filter(broadcast=broadcast).order_by("index").values_list("status", "message_id")) == [
        (SendStatus.READ, f"wamid.{broadcast.id}.0"),
        (SendStatus.FAILED, f"wamid.{broadcast.id}.1"),
        (SendStatus.DELIVERED, "wamid.NEW"),
    ]
    assert Send.objects.get(broadcast=broadcast, index=0).user_id == "CO.1234567890"
    assert suppression_get(organization_id=org.id, to=before[1]["to"]) is not None
