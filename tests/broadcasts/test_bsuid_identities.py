"""Who a user is, from everything Meta tells us (docs/rules.md, "Usernames and BSUIDs"): signed webhooks through the
real receiver, Meta's answers through the real outcome write, the suppression API and the erasure."""

import time
from datetime import timedelta

import orjson
import pytest
from django.utils import timezone

from broadcasts.delivery.outcomes import OutcomeRow, sends_record
from broadcasts.models import (
    ContactIdentity,
    CustomerWindow,
    MarketingHold,
    Send,
    SendStatus,
    Suppression,
    UserPreference,
)
from broadcasts.rules.identities import numbers_of_user
from broadcasts.rules.suppressions import suppressed_among
from tests.events.helpers import broadcast_with_sends, meta_envelope, meta_signature

SECRET = "meta-app-secret"
USER = "ES.8841920377"
NUMBER = "+34600000000"  # broadcast_with_sends' index 0
T = 1_790_000_000


@pytest.fixture(autouse=True)
def _meta_settings(settings):
    settings.WHATSAPP_APP_SECRET = SECRET


def post(client, payload):
    body = orjson.dumps(payload)
    response = client.post(
        "/v1/webhooks/whatsapp",
        data=body,
        content_type="application/json",
        HTTP_X_HUB_SIGNATURE_256=meta_signature(body, SECRET),
    )
    assert response.status_code == 200, response.content
    return response


def preference(channel, value, *, at=T, wa_id=None, user_id=None):
    item = {"category": "marketing_messages", "value": value, "timestamp": at, "detail": "d"}
    if wa_id is not None:
        item["wa_id"] = wa_id
    if user_id is not None:
        item["user_id"] = user_id
    return meta_envelope(
        field="user_preferences",
        waba_id=channel.waba_id,
        value={
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "1555", "phone_number_id": channel.phone_number_id},
            "user_preferences": [item],
        },
    )


def incoming(channel, *, sender=None, user_id=None, contact_wa_id=None):
    message = {"id": "wamid.IN1", "timestamp": str(int(time.time())), "type": "text", "text": {"body": "hola"}}
    if sender is not None:
        message["from"] = sender
    contact = {"profile": {"name": "Ana"}}
    if contact_wa_id is not None:
        contact["wa_id"] = contact_wa_id
    if user_id is not None:
        contact["user_id"] = user_id
    return meta_envelope(
        field="messages",
        waba_id=channel.waba_id,
        value={
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "1555", "phone_number_id": channel.phone_number_id},
            "contacts": [contact],
            "messages": [message],
        },
    )


def status_with_user(broadcast, *, index=0, recipient_id="34600000000", user_id=USER, status="delivered"):
    entry = {"id": f"wamid.{broadcast.id}.{index}", "status": status, "timestamp": str(T)}
    if recipient_id is not None:
        entry["recipient_id"] = recipient_id
    entry["recipient_user_id"] = user_id
    return meta_envelope(statuses=[entry])


def suppressed(org, *addresses):
    return suppressed_among(organization_id=org.id, numbers=list(addresses))


# --- statuses and answers ---------------------------------------------------------------------------------------


def test_a_status_stores_its_bsuid_on_the_send_and_ties_the_number(client, org, channel, template):
    broadcast = broadcast_with_sends(org=org, channel=channel, template=template, count=2)
    post(client, status_with_user(broadcast))  # moved (SENT -> DELIVERED): stored with the move
    post(client, status_with_user(broadcast, index=1, status="sent", recipient_id=None, user_id="ES.77"))  # no move
    first, second = Send.objects.filter(broadcast=broadcast).order_by("index")
    assert (first.status, first.user_id) == (SendStatus.DELIVERED, USER)
    assert (second.status, second.user_id) == (SendStatus.SENT, "ES.77")
    pair = ContactIdentity.objects.get()  # the second status named no wa_id: no pair
    assert (pair.organization_id, pair.user_id, pair.wa_id, pair.number) == (org.id, USER, "34600000000", NUMBER)
    assert numbers_of_user(organization_id=org.id, user_id=USER) == [NUMBER]
    # the send's stored user_id alone ties its number too
    assert numbers_of_user(organization_id=org.id, user_id="ES.77") == ["+34600000001"]
    # a later status naming another BSUID does not overwrite the send's
    post(client, status_with_user(broadcast, status="read", user_id="ES.999"))
    assert Send.objects.get(id=first.id).user_id == USER


def test_a_status_naming_another_bsuid_than_the_answers_still_ties_the_number_to_it(client, org, channel, template):
    # Meta's answer named one BSUID (stored on the send); a status without a move ("sent") names another for the
    # same number: the send keeps the answer's, and the number is tied to both, so a stop by either suppresses it.
    broadcast = broadcast_with_sends(org=org, channel=channel, template=template, count=1)
    Send.objects.filter(broadcast=broadcast).update(user_id="ES.FROMANSWER", wa_id="34600000000")
    post(client, status_with_user(broadcast, status="sent"))
    assert Send.objects.get(broadcast=broadcast).user_id == "ES.FROMANSWER"
    assert list(ContactIdentity.objects.values_list("user_id", "wa_id", "number")) == [(USER, "34600000000", NUMBER)]
    post(client, preference(channel, "stop", user_id=USER))
    assert suppressed(org, USER, NUMBER) == {USER, NUMBER}


def test_hostile_user_fields_are_skipped_never_a_500(client, org, channel, template):
    broadcast = broadcast_with_sends(org=org, channel=channel, template=template, count=1)
    for user_id in (5, ["ES.1"], {"a": 1}, "not a bsuid", "ES." + "x" * 500, None):
        post(client, status_with_user(broadcast, user_id=user_id))
        post(client, preference(channel, "stop", user_id=user_id, wa_id=12))
        post(client, incoming(channel, sender=user_id, user_id=user_id, contact_wa_id=user_id))
    assert not ContactIdentity.objects.exists() and not Suppression.objects.exists()
    assert Send.objects.get().user_id is None


def test_the_answers_bsuid_is_stored_with_its_wa_id_and_tied_to_the_number_sent_to(org, channel, template):
    broadcast = broadcast_with_sends(org=org, channel=channel, template=template, count=2, status=SendStatus.PENDING)
    first, second = Send.objects.filter(broadcast=broadcast).order_by("index")
    Send.objects.filter(id=second.id).update(to="ES.OWN1", user_id="ES.OWN1")  # a BSUID recipient
    now = timezone.now()
    sends_record(
        rows=[
            OutcomeRow(id=first.id, status=SendStatus.SENT, message_id="wamid.a", wa_id="34600000000", user_id=USER),
            OutcomeRow(id=second.id, status=SendStatus.SENT, message_id="wamid.b", sent_at=now, user_id="ES.OTHER"),
        ]
    )
    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.wa_id, first.user_id) == ("34600000000", USER)
    assert second.user_id == "ES.OWN1"  # a BSUID recipient's own id stays
    assert list(ContactIdentity.objects.values_list("user_id", "wa_id", "number")) == [(USER, "34600000000", NUMBER)]


# --- preferences ------------------------------------------------------------------------------------------------


def test_a_username_only_stop_suppresses_the_bsuid_and_every_number_tied_to_it(client, org, channel, template):
    broadcast = broadcast_with_sends(org=org, channel=channel, template=template, count=2)
    post(client, status_with_user(broadcast))  # Meta ties +34600000000 to USER
    post(client, preference(channel, "stop", user_id=USER))
    assert suppressed(org, USER, NUMBER, "+34600000001") == {USER, NUMBER}
    post(client, preference(channel, "resume", user_id=USER, at=T + 10))
    assert not Suppression.objects.exists()


def test_an_older_resume_after_a_newer_stop_changes_nothing_and_a_replay_neither(client, org, channel):
    post(client, preference(channel, "stop", wa_id="34612345678", user_id=USER, at=T + 100))
    assert suppressed(org, USER, "+34612345678") == {USER, "+34612345678"}
    post(client, preference(channel, "resume", user_id=USER, at=T + 50))  # older, arriving late
    post(client, preference(channel, "resume", wa_id="34612345678", at=T + 50))
    assert suppressed(org, USER, "+34612345678") == {USER, "+34612345678"}
    post(client, preference(channel, "resume", user_id=USER, at=T + 200))  # newer: both go (the pair ties them)
    assert not Suppression.objects.exists()
    post(client, preference(channel, "stop", wa_id="34612345678", user_id=USER, at=T + 100))  # replayed stop
    assert not Suppression.objects.exists()
    assert set(UserPreference.objects.values_list("value", flat=True)) == {"resume"}


def test_an_unknown_bsuid_changes_nothing_beyond_its_own_entry(client, org, channel, template):
    broadcast_with_sends(org=org, channel=channel, template=template, count=1)
    post(client, preference(channel, "stop", user_id="BR.UNKNOWN"))
    assert list(Suppression.objects.values_list("to", flat=True)) == ["BR.UNKNOWN"]


def test_a_new_pair_of_a_stopped_bsuid_suppresses_its_number(client, org, channel, template):
    broadcast = broadcast_with_sends(org=org, channel=channel, template=template, count=1)
    post(client, preference(channel, "stop", user_id=USER))
    assert suppressed(org, USER, NUMBER) == {USER}
    post(client, status_with_user(broadcast))  # Meta now ties the number to that user
    assert suppressed(org, USER, NUMBER) == {USER, NUMBER}


# --- incoming messages ------------------------------------------------------------------------------------------


def test_a_username_only_message_opens_the_window_of_the_bsuid_and_its_tied_numbers(client, org, channel):
    post(client, preference(channel, "resume", wa_id="34612345678", user_id=USER))  # a pair, nothing suppressed
    post(client, incoming(channel, user_id=USER))  # no from, no wa_id
    assert set(CustomerWindow.objects.values_list("number", flat=True)) == {USER, "+34612345678"}


def test_a_brazilian_wa_id_without_the_ninth_digit_opens_the_number_we_sent_to(client, org, channel, template):
    # Meta answered +55 11 98765-4321 with a wa_id that lacks the ninth digit (an account older than the digit)
    broadcast = broadcast_with_sends(org=org, channel=channel, template=template, count=1, status=SendStatus.PENDING)
    send = Send.objects.get(broadcast=broadcast)
    Send.objects.filter(id=send.id).update(to="+5511987654321")
    sends_record(rows=[OutcomeRow(id=send.id, status=SendStatus.SENT, message_id="wamid.br", wa_id="551187654321")])
    post(client, incoming(channel, sender="551187654321", contact_wa_id="551187654321"))
    assert set(CustomerWindow.objects.values_list("number", flat=True)) == {"+5511987654321"}


# --- the suppression API by BSUID and the erasure ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "to"),
        ({"to": "+34612345678", "user_id": USER}, "user_id"),
        ({"user_id": "not-a-bsuid"}, "user_id"),
        ({"user_id": 5}, "user_id"),
        ({"user_id": "ES." + "x" * 200}, "user_id"),
        ({"to": USER}, "to"),
    ],
)
def test_the_api_refuses_bad_input_at_the_field_storing_nothing(api, body, field):
    response = api.post("/v1/suppressions", body, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "validation_error"
    assert field in response.json()["error"]["details"]
    assert not Suppression.objects.exists()


def test_the_api_lists_and_removes_a_bsuid_entry(api, org):
    response = api.post("/v1/suppressions", {"user_id": USER, "reason": "crm"}, format="json")
    assert response.status_code == 201
    assert response.json()["user_id"] == USER and response.json()["to"] is None
    assert api.post("/v1/suppressions", {"user_id": USER}, format="json").status_code == 200
    assert suppressed(org, USER) == {USER}
    (item,) = api.get("/v1/suppressions").json()["data"]
    assert item["to"] is None and item["user_id"] == USER and item["source"] == "api"
    api.post("/v1/suppressions", {"to": "+34612345678"}, format="json")
    items = api.get("/v1/suppressions").json()["data"]
    assert {(i["to"], i["user_id"]) for i in items} == {(None, USER), ("+34612345678", None)}
    assert api.delete(f"/v1/suppressions/{USER}").status_code == 204
    assert api.delete(f"/v1/suppressions/{USER}").status_code == 404
    assert api.delete("/v1/suppressions/ES.").status_code == 404
    assert suppressed(org, USER, "+34612345678") == {"+34612345678"}


def test_erasure_clears_metas_forms_the_pairs_and_the_holds(api, client, org, channel, template):
    broadcast = broadcast_with_sends(org=org, channel=channel, template=template, count=2)
    Send.objects.filter(broadcast=broadcast, index=0).update(wa_id="34600000000")
    post(client, status_with_user(broadcast))
    MarketingHold.objects.create(
        organization=org, to=NUMBER, failed_at=timezone.now(), until=timezone.now() + timedelta(hours=24)
    )
    MarketingHold.objects.create(
        organization=org, to="+34600000001", failed_at=timezone.now(), until=timezone.now() + timedelta(hours=24)
    )
    assert ContactIdentity.objects.exists()
    assert api.delete(f"/v1/contacts/{NUMBER}").status_code == 204
    erased = Send.objects.get(broadcast=broadcast, index=0)
    assert (erased.to, erased.wa_id, erased.user_id, erased.status) == ("", None, None, SendStatus.DELIVERED)
    assert not ContactIdentity.objects.exists()
    assert list(MarketingHold.objects.values_list("to", flat=True)) == ["+34600000001"]
    assert numbers_of_user(organization_id=org.id, user_id=USER) == []
