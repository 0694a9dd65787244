"""Meta's webhook envelope read into plain dataclasses, and its signature: pure, no database."""

import hashlib
import hmac
from datetime import UTC, datetime

import pytest

from tests.events.helpers import meta_envelope, status_entry
from whatsapp.inbound.envelope import OtherChange, envelope_parse
from whatsapp.inbound.statuses import StatusError, StatusUpdate, status_update_parse
from whatsapp.inbound.templates import TemplateStatusUpdate
from whatsapp.signatures import signature_valid


def test_a_status_is_read_with_its_metadata():
    error = {"code": 131026, "title": "Undeliverable", "message": "m", "error_data": {"details": "not on WhatsApp"}}
    entry = status_entry(
        "wamid.1",
        "FAILED",
        errors=[error],
        biz_opaque_callback_data="crm-7",
        pricing={"category": "marketing"},
        conversation={"id": "c1"},
    )
    [update] = envelope_parse(meta_envelope(statuses=[entry]))
    assert update == StatusUpdate(
        wamid="wamid.1",
        status="failed",
        timestamp=datetime.fromtimestamp(1_790_000_000, tz=UTC),
        recipient_id="34600000000",
        errors=(StatusError(code="131026", title="Undeliverable", message="m", details="not on WhatsApp"),),
        phone_number_id="100000000000001",
        biz_opaque_callback_data="crm-7",
        pricing={"category": "marketing"},
        conversation={"id": "c1"},
        raw=entry,
    )
    assert update.first_error.details == "not on WhatsApp"


def test_an_unreadable_timestamp_and_odd_errors_are_kept_as_unknown():
    update = status_update_parse({"id": "wamid.2", "status": "read", "timestamp": "soon", "errors": ["x", {}]})
    assert update.timestamp is None
    assert update.errors == (StatusError(None, "", "", ""), StatusError(None, "", "", ""))
    assert update.first_error.code is None


@pytest.mark.parametrize("entry", [None, 5, "x", {}, {"id": 7, "status": "read"}, {"id": "", "status": "read"}])
def test_a_status_without_a_string_id_is_skipped(entry):
    assert status_update_parse(entry) is None


def test_template_updates_and_other_changes():
    template = meta_envelope(
        field="message_template_status_update",
        value={
            "event": "paused",
            "message_template_id": 987,
            "message_template_name": "pago",
            "message_template_language": 5,
            "reason": "LOW_QUALITY",
        },
        waba_id="2000",
    )
    other = meta_envelope(field="account_update", value={"event": "VERIFIED_ACCOUNT"}, waba_id="3000")
    assert envelope_parse(template) == [
        TemplateStatusUpdate(
            waba_id="2000", event="PAUSED", template_id="987", name="pago", language=None, reason="LOW_QUALITY"
        )
    ]
    assert envelope_parse(other) == [OtherChange(waba_id="3000", field="account_update")]


@pytest.mark.parametrize(
    "payload",
    [
        {},
        {"entry": "x"},
        {"entry": [None, 1, {"changes": "x"}, {"changes": [None, {"field": "messages", "value": []}]}]},
        {"entry": [{"changes": [{"field": "messages", "value": {"statuses": [None, 5, {"id": 7}, {"status": "r"}]}}]}]},
    ],
)
def test_malformed_parts_are_skipped(payload):
    assert envelope_parse(payload) == []


def test_a_messages_change_without_a_statuses_list_is_another_change():
    payload = meta_envelope(field="messages", value={"statuses": "nope", "messages": []})
    assert envelope_parse(payload) == [OtherChange(waba_id="2000", field="messages")]


def test_statuses_of_several_entries_keep_their_order():
    first = meta_envelope(statuses=[status_entry("wamid.a", "delivered"), status_entry("wamid.b", "read")])
    second = meta_envelope(statuses=[status_entry("wamid.c", "sent")])
    payload = {"object": "whatsapp_business_account", "entry": first["entry"] + second["entry"]}
    assert [u.wamid for u in envelope_parse(payload)] == ["wamid.a", "wamid.b", "wamid.c"]


def _signature(body: bytes, secret: str) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def test_signature_valid_on_the_raw_bytes_only():
    body = b'{"entry": []}'
    assert signature_valid(body=body, header=_signature(body, "s3cret"), secret="s3cret")
    assert signature_valid(
        body=body, header=_signature(body, "s3cret").upper().replace("SHA256=", "sha256="), secret="s3cret"
    )
    assert not signature_valid(body=body + b" ", header=_signature(body, "s3cret"), secret="s3cret")
    assert not signature_valid(body=body, header=_signature(body, "other"), secret="s3cret")


@pytest.mark.parametrize("header", ["", "sha256=", "sha1=abc", "sha256=é" + "0" * 63, "sha256=" + "0" * 64])
def test_signature_refuses_missing_wrong_and_non_ascii_headers(header):
    assert not signature_valid(body=b"{}", header=header, secret="s3cret")


def test_signature_refuses_everything_without_a_secret():
    assert not signature_valid(body=b"{}", header=_signature(b"{}", ""), secret="")
