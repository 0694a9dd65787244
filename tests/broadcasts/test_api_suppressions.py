"""/v1/suppressions and DELETE /v1/contacts/{to} (docs/rules.md): shapes, hostile input, tenancy, events, erasure."""

import orjson
import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from broadcasts.models import Broadcast, Send, Suppression
from broadcasts.rules.suppressions import contact_erase, number_hash, suppressed_among
from events.models import Event, WebhookEndpoint
from tests.broadcasts.counts_support import assert_counts_exact
from tests.events.helpers import broadcast_with_sends, meta_envelope, meta_signature

pytestmark = pytest.mark.django_db

NUMBER = "+34612345678"


def _client(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


def test_post_lists_a_number_201_then_200_and_get_shows_it(api):
    created = api.post("/v1/suppressions", {"to": NUMBER, "reason": "asked by phone"}, format="json")
    assert created.status_code == 201, created.content
    body = created.json()
    assert body["to"] == NUMBER and body["reason"] == "asked by phone" and body["source"] == "api"
    assert body["created_at"].endswith("Z")
    again = api.post("/v1/suppressions", {"to": NUMBER}, format="json")
    assert again.status_code == 200 and again.json()["reason"] == "asked by phone"
    listing = api.get("/v1/suppressions").json()
    assert listing == {"data": [body], "next_cursor": None}


def test_get_is_newest_first_by_cursor(api):
    for i in range(5):
        assert api.post("/v1/suppressions", {"to": f"+3461234560{i}"}, format="json").status_code == 201
    first = api.get("/v1/suppressions", {"limit": 2}).json()
    assert [r["to"] for r in first["data"]] == ["+34612345604", "+34612345603"]
    second = api.get("/v1/suppressions", {"limit": 2, "cursor": first["next_cursor"]}).json()
    third = api.get("/v1/suppressions", {"limit": 2, "cursor": second["next_cursor"]}).json()
    assert [r["to"] for r in second["data"] + third["data"]] == ["+34612345602", "+34612345601", "+34612345600"]
    assert third["next_cursor"] is None


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "to"),
        ({"to": "612345678"}, "to"),
        ({"to": "+1"}, "to"),
        ({"to": 34612345678}, "to"),
        ({"to": ["+34612345678"]}, "to"),
        ({"to": "+34612345678\x00"}, "to"),
        ({"to": NUMBER, "reason": "x" * 256}, "reason"),
        ({"to": NUMBER, "reason": 5}, "reason"),
        ({"to": NUMBER, "reason": "a\x00b"}, "reason"),
        ([NUMBER], "body"),
    ],
)
def test_post_refuses_bad_input_in_the_envelope_and_stores_nothing(api, body, field):
    response = api.post("/v1/suppressions", body, format="json")
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "validation_error" and field in error["details"]
    assert not Suppression.objects.exists()


@pytest.mark.parametrize(
    "raw", [b"{", b"", b'{"to": "+34612345678"', b"\xff\xfe", b'"+34612345678"', b"null", b'{"to": "' + b"9" * 5000]
)
def test_post_garbage_bodies_are_4xx(api, raw):
    response = api.generic("POST", "/v1/suppressions", raw, content_type="application/json")
    assert 400 <= response.status_code < 500
    assert "error" in response.json()


@pytest.mark.parametrize("cursor", ["x", "!!!", "W10", "WyIyMDI2LTAxLTAxVDAwOjAwOjAwKzAwOjAwIiwgLTFd", "A" * 300])
def test_get_refuses_a_bad_cursor_or_limit(api, cursor):
    assert api.get("/v1/suppressions", {"cursor": cursor}).status_code == 400
    assert api.get("/v1/suppressions", {"limit": "0"}).status_code == 400
    assert api.get("/v1/suppressions", {"limit": "1e3"}).status_code == 400


def test_delete_takes_a_number_off_with_plus_or_percent_2b(api):
    api.post("/v1/suppressions", {"to": NUMBER}, format="json")
    assert api.delete("/v1/suppressions/%2B34612345678").status_code == 204
    assert api.delete("/v1/suppressions/%2B34612345678").status_code == 404
    api.post("/v1/suppressions", {"to": NUMBER}, format="json")
    assert api.delete(f"/v1/suppressions/{NUMBER}").status_code == 204
    assert not Suppression.objects.exists()


@pytest.mark.parametrize(
    "path", ["34612345678", "%20", "+1", "abc", "%00", "%2B" + "9" * 400, "+34612345678%00", "..%2F..", "%E2%80%8B"]
)
def test_delete_of_a_path_that_is_not_e164_is_404_never_500(api, path):
    for prefix in ("/v1/suppressions/", "/v1/contacts/"):
        response = api.delete(prefix + path)
        assert response.status_code == 404, (prefix, path, response.content)
        assert response.json()["error"]["code"] == "not_found"


def test_another_organization_sees_nothing(api, make_token, other_org):
    api.post("/v1/suppressions", {"to": NUMBER}, format="json")
    other = _client(make_token(organization=other_org))
    assert other.get("/v1/suppressions").json()["data"] == []
    assert other.delete(f"/v1/suppressions/{NUMBER}").status_code == 404
    assert other.post("/v1/suppressions", {"to": NUMBER}, format="json").status_code == 201  # its own list
    assert Suppression.objects.count() == 2
    assert suppressed_among(organization_id=other_org.id, numbers=[NUMBER, "+34612345679"]) == {NUMBER}


def test_scope_and_authentication(make_token, anon_api):
    assert anon_api.get("/v1/suppressions").status_code == 401
    no_bulk = _client(make_token(scopes=["templates:read"]))
    for response in (
        no_bulk.get("/v1/suppressions"),
        no_bulk.post("/v1/suppressions", {"to": NUMBER}, format="json"),
        no_bulk.delete(f"/v1/suppressions/{NUMBER}"),
        no_bulk.delete(f"/v1/contacts/{NUMBER}"),
    ):
        assert response.status_code == 403
        assert response.json()["error"]["code"] == "insufficient_scope"
    assert "RateLimit" in _client(make_token()).get("/v1/suppressions").headers


def test_events_only_when_the_list_really_changes(api, org, django_capture_on_commit_callbacks):
    WebhookEndpoint.objects.create(organization=org, url="https://example.com/hook", secret="whsec_x")
    with django_capture_on_commit_callbacks(execute=False):
        api.post("/v1/suppressions", {"to": NUMBER, "reason": "crm"}, format="json")
        api.post("/v1/suppressions", {"to": NUMBER}, format="json")
        api.delete(f"/v1/suppressions/{NUMBER}")
        api.delete(f"/v1/suppressions/{NUMBER}")
    events = sorted(Event.objects.values("type", "data"), key=lambda e: e["type"])  # added < removed
    assert events == [
        {"type": "suppression.added", "data": {"to": NUMBER, "source": "api", "reason": "crm"}},
        {"type": "suppression.removed", "data": {"to": NUMBER, "source": "api", "reason": "crm"}},
    ]


def test_user_preferences_webhook_by_phone_number_or_waba(client, settings, channel, other_org):
    settings.WHATSAPP_APP_SECRET = "s"

    def post(
        value: str, *, phone_number_id: str, waba_id: str, wa_id: str = "34612345678", category="marketing_messages"
    ):
        payload = meta_envelope(
            field="user_preferences",
            waba_id=waba_id,
            value={
                "messaging_product": "whatsapp",
                "metadata": {"display_phone_number": "1555", "phone_number_id": phone_number_id},
                "user_preferences": [
                    {"wa_id": wa_id, "detail": "d", "category": category, "value": value, "timestamp": 1790000000},
                    "not an object",
                    {"wa_id": 5},
                ],
            },
        )
        body = orjson.dumps(payload)
        response = client.post(
            "/v1/webhooks/whatsapp",
            data=body,
            content_type="application/json",
            HTTP_X_HUB_SIGNATURE_256=meta_signature(body, "s"),
        )
        assert response.status_code == 200

    org = channel.organization
    post("stop", phone_number_id=channel.phone_number_id, waba_id="unknown")
    assert suppressed_among(organization_id=org.id, numbers=[NUMBER]) == {NUMBER}
    assert Suppression.objects.get().source == "user_preferences"
    post("resume", phone_number_id="999", waba_id=channel.waba_id)  # matched by the WABA
    assert not Suppression.objects.exists()
    post("stop", phone_number_id="999", waba_id="999")  # no organization of ours
    post("stop", phone_number_id=channel.phone_number_id, waba_id="x", category="other")
    post("stop", phone_number_id=channel.phone_number_id, waba_id="x", wa_id="+3461234")
    post("pause", phone_number_id=channel.phone_number_id, waba_id="x")
    assert not Suppression.objects.exists()

    # Meta's wa_id of a Mexican mobile carries a 1 after 52 (docs/rules.md): the E.164 number is what is suppressed
    post("stop", phone_number_id=channel.phone_number_id, waba_id="x", wa_id="5215512345678")
    assert suppressed_among(organization_id=org.id, numbers=["+525512345678"]) == {"+525512345678"}


def test_a_stop_reaches_the_number_of_the_send_whose_stored_wa_id_meta_names(org, channel, template):
    from broadcasts.rules.suppressions import numbers_of_wa_id

    broadcast = broadcast_with_sends(org=org, channel=channel, template=template, count=1)
    Send.objects.filter(broadcast=broadcast).update(to="+5491123456789", wa_id="5491123456789")
    assert numbers_of_wa_id(organization_id=org.id, wa_id="5491123456789") == ["+5491123456789"]


def test_erasure_blanks_the_sends_keeps_counts_and_the_suppression_by_hash(api, org, channel, template):
    # Given a number with sends in two broadcasts (one still pending) and on the suppression list
    sent = broadcast_with_sends(org=org, channel=channel, template=template, count=3)
    pending = broadcast_with_sends(org=org, channel=channel, template=template, count=2, status="PENDING")
    target = "+34600000001"
    api.post("/v1/suppressions", {"to": target}, format="json")
    counts_before = {b.id: (b.total_recipients, b.sent) for b in Broadcast.objects.all()}

    # When the contact is erased
    assert api.delete(f"/v1/contacts/{target}").status_code == 204

    # Then its sends keep their rows, indexes and statuses, without number, variables or meta_data
    erased = list(Send.objects.filter(index=1).order_by("broadcast_id"))
    assert {s.broadcast_id for s in erased} == {sent.id, pending.id}
    for send in erased:
        assert send.to == "" and send.variables == {} and send.meta_data is None
    assert Send.objects.get(broadcast=sent, index=1).status == "SENT"
    assert Send.objects.get(broadcast=pending, index=1).status == "CANCELLED"
    assert Send.objects.filter(to="+34600000000").count() == 2  # other numbers untouched
    assert {b.id: (b.total_recipients, b.sent) for b in Broadcast.objects.all()} == counts_before
    assert_counts_exact(sent, pending)
    # And the number is still suppressed, by hash only
    entry = Suppression.objects.get()
    assert entry.to == "" and entry.to_hash == number_hash(target)
    assert suppressed_among(organization_id=org.id, numbers=[target]) == {target}
    assert api.get("/v1/suppressions").json()["data"][0]["to"] is None
    # And erasing again, or a number with nothing, is still 204
    assert api.delete(f"/v1/contacts/{target}").status_code == 204
    assert api.delete("/v1/contacts/%2B34699999999").status_code == 204


def test_erasure_cancels_pending_sends_in_two_broadcasts_and_their_kept_counts_equal_the_sends(
    api, org, channel, template
):
    # Given a number with pending sends in two broadcasts, a sent one in a third, and one being posted in a fourth
    first = broadcast_with_sends(org=org, channel=channel, template=template, count=3, status="PENDING")
    second = broadcast_with_sends(org=org, channel=channel, template=template, count=2, status="PENDING")
    sent = broadcast_with_sends(org=org, channel=channel, template=template, count=2)
    posting = broadcast_with_sends(org=org, channel=channel, template=template, count=2, status="PENDING")
    Send.objects.filter(broadcast=posting, index=1).update(posting_at=timezone.now())
    target = "+34600000001"

    # When the contact is erased
    assert api.delete(f"/v1/contacts/{target}").status_code == 204

    # Then its pending sends not being posted are CANCELLED, and every broadcast's kept counts equal its sends'
    assert {b.id: Send.objects.get(broadcast=b, index=1).status for b in (first, second, sent, posting)} == {
        first.id: "CANCELLED",
        second.id: "CANCELLED",
        sent.id: "SENT",
        posting.id: "PENDING",  # left to its POST
    }
    kept = assert_counts_exact(first, second, sent, posting)
    assert (kept[first.id]["pending"], kept[first.id]["cancelled"]) == (2, 1)
    assert (kept[second.id]["pending"], kept[second.id]["cancelled"]) == (1, 1)
    assert (kept[sent.id]["sent"], kept[posting.id]["pending"], kept[posting.id]["cancelled"]) == (2, 2, 0)
    cancelled = Send.objects.filter(broadcast__in=[first, second], index=1)
    assert all(s.next_attempt_at is None and s.lease_expires_at is None and s.posting_at is None for s in cancelled)


def test_erasure_goes_in_bounded_batches(org, channel, template, monkeypatch):
    from broadcasts.rules import suppressions

    monkeypatch.setattr(suppressions, "ERASE_BATCH", 2)
    for _ in range(3):
        broadcast_with_sends(org=org, channel=channel, template=template, count=2)
    assert contact_erase(organization_id=org.id, to="+34600000000") == 3
    assert not Send.objects.filter(to="+34600000000").exists()


def test_erasure_is_per_organization(api, other_org, channel, template):
    from templates_registry.models import Channel

    other_channel = Channel.objects.create(
        organization=other_org, phone_number_id="100000000000009", waba_id="2009", access_token="t"
    )
    broadcast_with_sends(org=other_org, channel=other_channel, template=template, count=1)
    assert api.delete("/v1/contacts/%2B34600000000").status_code == 204
    assert Send.objects.get().to == "+34600000000"


def test_admin_lists_finds_by_number_and_removes(admin_client, org, other_org):
    from django.urls import reverse

    from broadcasts.rules.suppressions import suppression_add

    suppression_add(organization_id=org.id, to=NUMBER, source="api", reason="crm")
    suppression_add(organization_id=other_org.id, to="+34612345679", source="131050")
    contact_erase(organization_id=other_org.id, to="+34612345679")
    url = reverse("admin:broadcasts_suppression_changelist")
    page = admin_client.get(url).content.decode()
    assert NUMBER in page and "(erased)" in page
    found = admin_client.get(url, {"q": "34612345679"}).content.decode()  # erased: found by its hash
    assert "(erased)" in found and NUMBER not in found
    assert admin_client.get(reverse("admin:broadcasts_suppression_add")).status_code == 403
    ids = [str(pk) for pk in Suppression.objects.values_list("pk", flat=True)]
    response = admin_client.post(url, {"action": "remove_selected", "_selected_action": ids})
    assert response.status_code == 302
    assert not Suppression.objects.exists()


def test_admin_delete_button_tells_the_customer(admin_client, org, django_capture_on_commit_callbacks):
    from django.urls import reverse

    from broadcasts.rules.suppressions import suppression_add

    WebhookEndpoint.objects.create(organization=org, url="https://example.com/hook", secret="whsec_x")
    row, _ = suppression_add(organization_id=org.id, to=NUMBER, source="api", reason="crm")
    Event.objects.all().delete()
    url = reverse("admin:broadcasts_suppression_delete", args=[row.pk])
    with django_capture_on_commit_callbacks(execute=False):
        assert admin_client.post(url, {"post": "yes"}).status_code == 302
    # the entry's own Delete button went through the service, as DELETE /v1/suppressions/{to} does
    assert not Suppression.objects.exists()
    assert list(Event.objects.values("type", "data")) == [
        {"type": "suppression.removed", "data": {"to": NUMBER, "source": "api", "reason": "crm"}}
    ]
    # and the list offers no bare bulk delete
    assert (
        "delete_selected" not in admin_client.get(reverse("admin:broadcasts_suppression_changelist")).content.decode()
    )
