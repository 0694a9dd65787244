"""Recipients given by ``user_id`` (a BSUID) in POST /v1/messages/bulk: validated with every other recipient, stored
in ``to`` and ``user_id``, listed with ``to`` null, exported with the BSUID in the CSV's ``to`` (docs/api.md)."""

import csv
import io

import orjson
import pytest

from broadcasts.models import Send
from templates_registry.models import Template
from tests.broadcasts.test_api_create import URL, post, stored

BSUID = "US.13491208655302741918"
PARENT_BSUID = "MX.ENT.a1B2c3"


def body(channel, recipients, **extra) -> dict:
    return {
        "template_name": "welcome_v2",
        "language": "es",
        "channel_id": channel.id,
        "recipients": [{**r, "variables": {"nombre": "Ana", "monto": "1"}} for r in recipients],
        **extra,
    }


def details_of(response) -> dict:
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    return error["details"]


def test_numbers_and_bsuids_are_stored_listed_and_exported(api, channel, template):
    # Given a request mixing a number and two BSUIDs (one a parent BSUID)
    recipients = [{"to": "+34612345678"}, {"user_id": BSUID}, {"user_id": PARENT_BSUID, "meta_data": {"k": 1}}]

    # When it is posted
    response = post(api, body(channel, recipients), HTTP_IDEMPOTENCY_KEY="bsuid-1")

    # Then it is accepted, each BSUID stored as both to and user_id; the number's user_id is null
    assert response.status_code == 202, response.content
    broadcast_id = response.json()["broadcast_id"]
    rows = list(Send.objects.filter(broadcast_id=broadcast_id).order_by("index").values_list("to", "user_id"))
    assert rows == [("+34612345678", None), (BSUID, BSUID), (PARENT_BSUID, PARENT_BSUID)]

    # And the listing shows to null and user_id for a BSUID; the number's user_id is Meta's once stored
    Send.objects.filter(broadcast_id=broadcast_id, index=0).update(user_id="ES.998877")
    listed = api.get(f"{URL}/{broadcast_id}/recipients").json()["data"]
    assert [(r["to"], r["user_id"]) for r in listed] == [
        ("+34612345678", "ES.998877"),
        (None, BSUID),
        (None, PARENT_BSUID),
    ]
    assert listed[2]["meta_data"] == {"k": 1}

    # And the CSV keeps its header, with the BSUID in to
    exported = api.get(f"{URL}/{broadcast_id}/recipients?format=csv")
    assert exported.status_code == 200
    lines = list(csv.reader(io.StringIO(b"".join(exported.streaming_content).decode())))
    assert lines[0] == "index,to,status,message_id,attempts,error_code,error_message,updated_at,meta_data".split(",")
    assert [line[1] for line in lines[1:]] == ["+34612345678", BSUID, PARENT_BSUID]

    # And the same request again is the original 202, nothing new
    before = stored()
    replay = post(api, body(channel, recipients), HTTP_IDEMPOTENCY_KEY="bsuid-1")
    assert replay.status_code == 202 and replay.json() == response.json()
    assert replay.headers["Idempotent-Replayed"] == "true" and stored() == before


def test_every_bad_address_is_a_400_at_its_path_and_nothing_is_stored(api, channel, template):
    recipients = [
        {"to": "+34612345678"},
        {"to": "+34612345678", "user_id": BSUID},  # both
        {"variables": {}},  # neither
        {"user_id": "us.1234"},  # lower-case country
        {"user_id": "USA.1234"},  # three letters
        {"user_id": "US.ENT."},  # nothing after ENT.
        {"user_id": "US." + "1" * 129},  # too long
        {"user_id": "US.12-34"},  # not letters and digits
        {"user_id": 1234},  # not a string
        {"user_id": "+34612345678"},  # a number is not a BSUID
        {"to": None, "user_id": None},  # neither, as nulls
        {"user_id": "US." + "a" * 128},  # the longest: fine
    ]
    data = body(channel, [])
    data["recipients"] = recipients  # as given: no variables added

    details = details_of(post(api, data))

    bsuid_error = details["recipients[3].user_id"][0]
    assert "business-scoped user id" in bsuid_error
    assert details == {
        "recipients[1]": ["Exactly one of to (a phone number) or user_id (a BSUID) is required."],
        "recipients[2]": ["Exactly one of to (a phone number) or user_id (a BSUID) is required."],
        "recipients[3].user_id": [bsuid_error],
        "recipients[4].user_id": [bsuid_error],
        "recipients[5].user_id": [bsuid_error],
        "recipients[6].user_id": [bsuid_error],
        "recipients[7].user_id": [bsuid_error],
        "recipients[8].user_id": ["Must be a string."],
        "recipients[9].user_id": [bsuid_error],
        "recipients[10]": ["Exactly one of to (a phone number) or user_id (a BSUID) is required."],
    }
    assert stored() == (0, 0, 0)


def test_a_bsuid_recipient_of_an_authentication_template_is_a_400(api, channel, template):
    # Given an AUTHENTICATION template (Meta sends those to numbers only)
    Template.objects.filter(pk=template.pk).update(category=Template.Category.AUTHENTICATION)
    recipients = [{"to": "+34612345678"}, {"user_id": BSUID}, {"to": "+1"}, {"user_id": PARENT_BSUID}]

    # When BSUIDs are among its recipients (and a malformed number too)
    details = details_of(post(api, body(channel, recipients)))

    # Then each BSUID is reported under its own path, with the malformed number, and nothing is stored
    message = ["An AUTHENTICATION template goes to phone numbers only: give this recipient's to."]
    assert details == {
        "recipients[1].user_id": message,
        "recipients[2].to": ["Not a valid E.164 phone number."],
        "recipients[3].user_id": message,
    }
    assert stored() == (0, 0, 0)

    # And the same recipients of a UTILITY template are accepted
    Template.objects.filter(pk=template.pk).update(category=Template.Category.UTILITY)
    del recipients[2]
    assert post(api, body(channel, recipients)).status_code == 202


def test_a_dry_run_validates_bsuids_exactly_as_a_real_request(api, channel, template):
    response = post(api, body(channel, [{"user_id": "US.1"}, {"user_id": "x"}], dry_run=True))
    assert list(details_of(response)) == ["recipients[1].user_id"]
    ok = post(api, body(channel, [{"user_id": "CO.1"}, {"to": "+34612345678"}], dry_run=True))
    assert ok.status_code == 200, ok.content
    assert ok.json()["total_recipients"] == 2
    assert stored() == (0, 0, 0)


@pytest.mark.parametrize("user_id", ["US.1", "ES.ENT.abcDEF0123", "BR." + "Z9" * 64])
def test_valid_bsuids_are_accepted(api, channel, template, user_id):
    response = post(api, body(channel, [{"user_id": user_id}]))
    assert response.status_code == 202, response.content
    assert orjson.loads(response.content)["total_recipients"] == 1
    assert Send.objects.get().to == user_id
