"""POST /v1/messages/bulk with bad input: a clear 4xx in the envelope, never a 500, nothing stored."""

from datetime import UTC, datetime, timedelta

import orjson
import pytest

from templates_registry.models import Channel, Template
from tests.broadcasts.test_api_create import URL, payload, post, stored


@pytest.fixture(autouse=True)
def _nothing_stored_after(db):
    """Every test here ends with nothing stored: all-or-nothing."""
    yield
    assert stored() == (0, 0, 0)


def details_of(response, status=400, code="validation_error") -> dict:
    assert response.status_code == status, response.content
    error = response.json()["error"]
    assert error["code"] == code, error
    assert error["message"]
    return error["details"]


def test_invalid_json_is_invalid_json(api, channel, template):
    response = api.post(URL, b'{"template_name": ', content_type="application/json")
    details_of(response, code="invalid_json")


@pytest.mark.parametrize("raw", [b"", b"\xff\xfe", b"NaN", b"[1,2", b'{"a": 1}}'])
def test_unparseable_bodies_are_invalid_json(api, raw):
    details_of(api.post(URL, raw, content_type="application/json"), code="invalid_json")


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "application/xml"])
def test_other_content_types_are_415(api, channel, template, content_type):
    response = api.post(URL, orjson.dumps(payload(channel)), content_type=content_type)
    details_of(response, status=415, code="unsupported_media_type")


@pytest.mark.parametrize("body", [[], "text", 12, None, True])
def test_body_must_be_an_object(api, body):
    assert details_of(post(api, body)) == {"body": ["Must be a JSON object."]}


def test_missing_fields_are_all_reported(api):
    details = details_of(post(api, {}))
    assert set(details) == {"template_name", "language", "channel_id", "recipients"}


@pytest.mark.parametrize(
    "field,value",
    [
        ("template_name", 12),
        ("template_name", ["welcome_v2"]),
        ("template_name", ""),
        ("template_name", "x" * 513),
        ("template_name", "welcome\x00v2"),
        ("language", {"code": "es"}),
        ("language", "e" * 21),
        ("channel_id", 100000000000001),
        ("channel_id", None),
        ("campaign_name", 7),
        ("campaign_name", "c" * 256),
        ("campaign_name", "nul\x00"),
        ("campaign_name", "   "),
        ("scheduled_at", ""),
        ("scheduled_at", 1764252180),
        ("scheduled_at", "tomorrow"),
        ("scheduled_at", "2030-01-01T10:00:00"),  # no offset
        ("scheduled_at", "2020-01-01T10:00:00Z"),  # past
        ("scheduled_at", "9999-12-31T23:59:59-23:59"),  # out of range once in UTC
        ("recipients", {"to": "+34612345678"}),
        ("recipients", "+34612345678"),
        ("recipients", []),
    ],
)
def test_wrong_top_level_fields_are_reported_under_their_name(api, channel, template, field, value):
    details = details_of(post(api, payload(channel, **{field: value})))
    assert list(details) == [field]


def test_scheduled_at_more_than_90_days_ahead_is_refused(api, channel, template):
    too_far = (datetime.now(UTC) + timedelta(days=90, minutes=5)).isoformat()
    assert "90 days" in details_of(post(api, payload(channel, scheduled_at=too_far)))["scheduled_at"][0]


def test_5001_recipients_are_refused(api, channel, template):
    body = payload(channel, n=1)
    body["recipients"] = body["recipients"] * 5001
    assert list(details_of(post(api, body))) == ["recipients"]


def test_every_bad_recipient_is_reported_under_its_path(api, channel, template):
    # given 20 recipients of which several are wrong in different ways
    body = payload(channel, n=20)
    recipients = body["recipients"]
    recipients[3]["to"] = "+1"  # too short
    recipients[5]["to"] = "0034612345678"  # no +
    recipients[7]["to"] = "+34 612 345 678"  # formatted
    recipients[9]["to"] = 34612345678  # a number
    del recipients[11]["to"]
    recipients[12]["to"] = "+99912345678"  # unknown country calling code
    recipients[13]["to"] = "+٣٤٦١٢٣٤٥٦٧٨"  # non-ASCII digits
    recipients[14] = "+34612345678"  # not an object
    recipients[15]["variables"] = {"nombre": 5, "monto": "1"}
    recipients[16]["variables"] = ["Ana"]
    recipients[17]["to"] = "+34612345678\x00"
    recipients[18]["meta_data"] = [1, 2]
    recipients[19]["meta_data"] = {"note": "nul\x00"}

    # when posted
    details = details_of(post(api, body))

    # then each one is reported under its own path, the good ones are not
    assert details == {
        "recipients[3].to": ["Not a valid E.164 phone number."],
        "recipients[5].to": ["Not a valid E.164 phone number."],
        "recipients[7].to": ["Not a valid E.164 phone number."],
        "recipients[9].to": ["Must be a string."],
        "recipients[11]": ["Exactly one of to (a phone number) or user_id (a BSUID) is required."],
        "recipients[12].to": ["Not a valid E.164 phone number."],
        "recipients[13].to": ["Not a valid E.164 phone number."],
        "recipients[14]": ["Must be an object {to or user_id, variables?, meta_data?}."],
        "recipients[15].variables.nombre": ["Must be a string."],
        "recipients[16].variables": ["Must be an object of strings."],
        "recipients[17].to": ["Not a valid E.164 phone number."],
        "recipients[18].meta_data": ["Must be an object."],
        "recipients[19].meta_data": ["May not contain NUL characters."],
    }


def test_long_variable_values_and_large_meta_data_are_refused(api, channel, template):
    body = payload(channel, n=3)
    body["recipients"][0]["variables"]["nombre"] = "a" * 1025
    body["recipients"][1]["meta_data"] = {"blob": "b" * 4100}
    body["recipients"][2]["variables"] = {"k" * 200: "v"}
    details = details_of(post(api, body))
    assert set(details) == {"recipients[0].variables.nombre", "recipients[1].meta_data", "recipients[2].variables"}


def test_deeply_nested_meta_data_is_a_400_not_a_500(api, channel, template):
    raw = orjson.dumps(payload(channel, n=1)).replace(b'{"customer":0}', b'{"a":' + b"[" * 2000 + b"]" * 2000 + b"}")
    response = api.post(URL, raw, content_type="application/json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] in {"invalid_json", "validation_error"}


def test_unknown_channel_is_channel_not_found(api, channel, template):
    details = details_of(post(api, payload(channel, channel_id="000000000000000000000000")), code="channel_not_found")
    assert list(details) == ["channel_id"]


def test_another_organizations_channel_is_as_if_unknown(api, other_org, channel, template):
    theirs = Channel.objects.create(
        organization=other_org, phone_number_id="100000000000999", waba_id=channel.waba_id, access_token="t"
    )
    for channel_id in (theirs.id, theirs.phone_number_id):
        details_of(post(api, payload(channel, channel_id=channel_id)), code="channel_not_found")


def test_unknown_template_or_language_is_template_not_found(api, channel, template):
    details_of(post(api, payload(channel, template_name="nope")), code="template_not_found")
    details_of(post(api, payload(channel, language="en")), code="template_not_found")


def test_template_of_another_business_account_is_not_found(api, channel, template):
    template.waba_id = "299999999999999"
    template.save()
    details_of(post(api, payload(channel)), code="template_not_found")


@pytest.mark.parametrize("status", ["PENDING", "REJECTED", "PAUSED", "DISABLED"])
def test_template_not_approved(api, channel, template, status):
    Template.objects.filter(pk=template.pk).update(status=status)
    details = details_of(post(api, payload(channel)), code="template_not_approved")
    assert status in details["template_name"][0]


def test_field_errors_and_lookup_errors_come_together(api, channel, template):
    body = payload(channel, n=2, channel_id="nope")
    body["recipients"][1]["to"] = "+12"
    details = details_of(post(api, body))
    assert set(details) == {"channel_id", "recipients[1].to"}


BAD_VALUES = [None, 0, -1, 1.5, True, "", "x" * 5000, "\x00", [], [None], {}, {"k": {"n": [1]}}]


def _paths(body: dict) -> list[tuple]:
    """Every place in a valid body a client could get wrong."""
    paths: list[tuple] = [(key,) for key in body]
    paths += [("recipients", 0), ("recipients", 0, "to"), ("recipients", 0, "variables")]
    paths += [("recipients", 0, "variables", "nombre"), ("recipients", 0, "meta_data")]
    paths += [("recipients", 0, "meta_data", "customer")]
    return paths


def _replace(body, path, value):
    target = body
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value


def test_any_wrong_value_anywhere_is_a_4xx_never_a_500(
    api, channel, template, settings, django_capture_on_commit_callbacks
):
    # given a valid body, and every value of every kind put in every place
    settings.API_RATE_LIMITS = "100000/min"
    settings.API_ORG_RATE_LIMITS = "100000/min"
    base = payload(channel, n=2, campaign_name="Fuzz")
    outcomes = set()
    for path in _paths(base):
        for value in BAD_VALUES:
            body = orjson.loads(orjson.dumps(base))
            _replace(body, path, value)
            with django_capture_on_commit_callbacks(execute=False):
                response = post(api, body)
            # then: accepted (meta_data content, ignored values) or a 400 in the envelope
            assert response.status_code in (202, 400), (path, value, response.content)
            if response.status_code == 400:
                assert response.json()["error"]["details"], (path, value)
            outcomes.add(response.status_code)
    assert outcomes == {202, 400}
    # clean up what the accepted ones stored, for this module's "nothing stored" check
    from broadcasts.models import Broadcast

    Broadcast.objects.all().delete()
