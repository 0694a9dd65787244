"""Meta's template status updates, through the webhook receiver, applied by
templates_registry.services.template_status_update_apply (routed by broadcasts/status_updates/inbound.py)."""

import orjson
import pytest

from templates_registry.models import Channel, Template
from tests.events.helpers import meta_envelope, meta_signature

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


# --- template status updates -------------------------------------------------------------------


def _template_update(template, event, *, meta_id=None, waba_id=None):
    value = {
        "event": event,
        "message_template_id": meta_id or 987654321,
        "message_template_name": template.name,
        "message_template_language": template.language,
        "reason": "NONE",
    }
    return meta_envelope(field="message_template_status_update", value=value, waba_id=waba_id or template.waba_id)


def test_template_update_by_waba_name_and_language(client, template):
    response = post_signed(client, _template_update(template, "PAUSED"))
    assert response.status_code == 200
    template.refresh_from_db()
    assert template.status == "PAUSED"


def test_template_update_by_meta_id_wins_over_name(client, template):
    # Given two templates of one WABA, the update names one by Meta's id and the other by name
    template.meta_id = "555"
    template.save()
    other = Template.objects.create(
        waba_id=template.waba_id, name="other", language="en", status="APPROVED", meta_id=""
    )
    envelope = _template_update(other, "DISABLED", meta_id=555)
    assert post_signed(client, envelope).status_code == 200
    template.refresh_from_db()
    other.refresh_from_db()
    assert template.status == "DISABLED"
    assert other.status == "APPROVED"


def _template_change(field, value, *, meta_id, waba_id):
    value = {
        "message_template_id": meta_id,
        "message_template_name": "renamed",
        "message_template_language": "xx",
        **value,
    }
    return meta_envelope(field=field, value=value, waba_id=waba_id)


@pytest.mark.parametrize(
    ("field", "value", "column", "changed"),
    [
        ("message_template_status_update", {"event": "DISABLED", "reason": "NONE"}, "status", "DISABLED"),
        (
            "template_category_update",
            {"previous_category": "MARKETING", "new_category": "UTILITY"},
            "category",
            "UTILITY",
        ),
        ("message_template_quality_update", {"new_quality_score": "RED"}, "quality", "RED"),
    ],
)
def test_an_update_naming_a_template_by_meta_id_changes_it_only_from_its_own_waba(
    client, other_org, template, field, value, column, changed
):
    # Given a template of the channel's WABA known by Meta's id, and another organization's channel on another WABA
    template.meta_id = "777"
    template.save()
    Channel.objects.create(organization=other_org, phone_number_id="100000000000777", waba_id="2777", access_token="t")
    before = Template.objects.filter(id=template.id).values().get()
    # When a signed update names that id from another WABA (ours, or none of ours): answered 2xx, nothing changes
    for waba_id in ("2777", "9999"):
        assert post_signed(client, _template_change(field, value, meta_id=777, waba_id=waba_id)).status_code == 200
        assert Template.objects.filter(id=template.id).values().get() == before
    # While the same update from the template's own WABA applies
    assert post_signed(client, _template_change(field, value, meta_id=777, waba_id=template.waba_id)).status_code == 200
    assert getattr(Template.objects.get(id=template.id), column) == changed


def test_template_reinstated_becomes_approved_again(client, template):
    template.status = "PAUSED"
    template.save()
    post_signed(client, _template_update(template, "REINSTATED"))
    template.refresh_from_db()
    assert template.status == "APPROVED"


def test_template_update_of_another_waba_changes_nothing(client, template):
    post_signed(client, _template_update(template, "REJECTED", waba_id="someone-else"))
    template.refresh_from_db()
    assert template.status == "APPROVED"


def test_template_no_longer_approved_cannot_start_a_broadcast(client, api, channel, template):
    # Given the template was rejected by Meta
    post_signed(client, _template_update(template, "REJECTED"))
    # When a broadcast is requested with it
    response = api.post(
        "/v1/messages/bulk",
        {
            "template_name": template.name,
            "language": template.language,
            "channel_id": channel.id,
            "recipients": [{"to": "+34600000001", "variables": {"nombre": "Ana", "monto": "1"}}],
        },
        format="json",
    )
    # Then it is refused and nothing is stored
    assert response.status_code == 400
    assert not template.broadcasts.exists()
