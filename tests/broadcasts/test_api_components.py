"""POST /v1/messages/bulk with template components (docs/api.md): header_media per broadcast and per recipient,
buttons by index; every bad shape and every parameter a template needs and a recipient lacks is a 400 naming its
path, with nothing stored."""

import orjson
import pytest

from broadcasts.models import Broadcast, Send
from tests.broadcasts.components_support import (
    ALL,
    AUTH_TEMPLATE,
    COUPON_TEMPLATE,
    DOCUMENT_TEMPLATE,
    IMAGE_TEMPLATE,
    URL_TEMPLATE,
    register,
)
from tests.broadcasts.test_api_create import NUMBERS, URL, stored

IMAGE = {"type": "image", "link": "https://cdn.example/promo.png"}


@pytest.fixture
def dispatched(monkeypatch):
    calls = []
    monkeypatch.setattr("broadcasts.services.enqueue_dispatch", calls.append)
    return calls


@pytest.fixture
def templates(channel):
    return {item["name"]: register(channel, item) for item in ALL}


def body_for(channel, item, recipients, **extra) -> dict:
    return {
        "template_name": item["name"],
        "language": item["language"],
        "channel_id": channel.id,
        "recipients": recipients,
        **extra,
    }


def post(api, body):
    return api.post(URL, orjson.dumps(body), content_type="application/json")


def details_of(response) -> dict:
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "validation_error", error
    assert stored() == (0, 0, 0)
    return error["details"]


def recipient(i: int, **extra) -> dict:
    return {"to": NUMBERS[i % len(NUMBERS)], "variables": {"1": f"Ana {i}"}, **extra}


# ---- accepted and stored -------------------------------------------------------------------------------------


def test_header_media_is_stored_per_broadcast_and_overrides_per_send(api, channel, templates, dispatched):
    override = {"type": "image", "id": "1234567890"}
    body = body_for(channel, IMAGE_TEMPLATE, [recipient(0), recipient(1, header_media=override)], header_media=IMAGE)
    response = post(api, body)
    assert response.status_code == 202, response.content
    broadcast = Broadcast.objects.get()
    assert broadcast.header_media == IMAGE
    sends = list(Send.objects.order_by("index").values("header_media", "buttons", "status", "variables"))
    assert sends == [
        {"header_media": None, "buttons": None, "status": "PENDING", "variables": {"1": "Ana 0"}},
        {"header_media": override, "buttons": None, "status": "PENDING", "variables": {"1": "Ana 1"}},
    ]


def test_every_recipient_may_bring_its_own_media_without_a_broadcast_one(api, channel, templates, dispatched):
    doc = {"type": "document", "link": "https://cdn.example/i.pdf", "filename": "invoice.pdf"}
    body = body_for(channel, DOCUMENT_TEMPLATE, [recipient(0, header_media=doc), recipient(1, header_media=doc)])
    assert post(api, body).status_code == 202
    assert Broadcast.objects.get().header_media is None
    assert [s.header_media for s in Send.objects.order_by("index")] == [doc, doc]


def test_buttons_are_stored_per_send(api, channel, templates, dispatched):
    body = body_for(channel, URL_TEMPLATE, [recipient(0, buttons={"1": "A-1"}), recipient(1, buttons={"1": "B/2?x=1"})])
    assert post(api, body).status_code == 202
    assert [s.buttons for s in Send.objects.order_by("index")] == [{"1": "A-1"}, {"1": "B/2?x=1"}]


def test_authentication_code_fills_the_body_so_no_variable_is_missing(api, channel, templates, dispatched):
    body = body_for(channel, AUTH_TEMPLATE, [{"to": NUMBERS[0], "buttons": {"0": "123456"}}])
    assert post(api, body).status_code == 202
    send = Send.objects.get()
    assert (send.status, send.variables, send.buttons) == ("PENDING", {}, {"0": "123456"})


def test_a_plain_template_stores_no_component_columns(api, channel, template, dispatched):
    body = {
        "template_name": "welcome_v2",
        "language": "es",
        "channel_id": channel.id,
        "recipients": [{"to": NUMBERS[0], "variables": {"nombre": "Ana", "monto": "1"}}],
    }
    assert post(api, body).status_code == 202
    assert list(Send.objects.values_list("header_media", "buttons")) == [(None, None)]
    assert Broadcast.objects.get().header_media is None


# ---- required by the template ----------------------------------------------------------------------------------


def test_media_header_without_any_media_is_one_error(api, channel, templates):
    details = details_of(post(api, body_for(channel, IMAGE_TEMPLATE, [recipient(0), recipient(1)])))
    assert details == {"header_media": ["Required by the template's IMAGE header (here or per recipient)."]}


def test_recipients_lacking_media_when_others_have_it_are_each_named(api, channel, templates):
    recipients = [recipient(0, header_media=IMAGE), recipient(1), recipient(2)]
    details = details_of(post(api, body_for(channel, IMAGE_TEMPLATE, recipients)))
    assert details == {
        "recipients[1].header_media": ["Required by the template's IMAGE header."],
        "recipients[2].header_media": ["Required by the template's IMAGE header."],
    }


def test_url_button_without_a_value_is_named(api, channel, templates):
    recipients = [recipient(0, buttons={"1": "A-1"}), recipient(1), recipient(2, buttons={})]
    details = details_of(post(api, body_for(channel, URL_TEMPLATE, recipients)))
    assert details == {
        "recipients[1].buttons.1": ["Required by the template's URL button."],
        "recipients[2].buttons.1": ["Required by the template's URL button."],
    }


def test_authentication_template_without_the_code_is_named(api, channel, templates):
    details = details_of(post(api, body_for(channel, AUTH_TEMPLATE, [{"to": NUMBERS[0], "variables": {"1": "1"}}])))
    assert details == {"recipients[0].buttons.0": ["Required by the template's one-time-code button."]}


def test_coupon_button_without_a_code_is_named(api, channel, templates):
    details = details_of(post(api, body_for(channel, COUPON_TEMPLATE, [{"to": NUMBERS[0]}])))
    assert details == {"recipients[0].buttons.0": ["Required by the template's copy-code button."]}


# ---- against the template -----------------------------------------------------------------------------------


def test_media_type_must_match_the_header(api, channel, templates):
    video = {"type": "video", "link": "https://cdn.example/v.mp4"}
    recipients = [recipient(0), recipient(1, header_media={"type": "document", "id": "9"})]
    details = details_of(post(api, body_for(channel, IMAGE_TEMPLATE, recipients, header_media=video)))
    assert details == {
        "header_media.type": ["The template's header is IMAGE: must be image."],
        "recipients[1].header_media.type": ["The template's header is IMAGE: must be image."],
    }


def test_media_for_a_template_without_media_header_is_refused(api, channel, templates):
    recipients = [recipient(0, buttons={"1": "x"}, header_media=IMAGE)]
    details = details_of(post(api, body_for(channel, URL_TEMPLATE, recipients, header_media=IMAGE)))
    assert details == {
        "header_media": ["The template has no media header."],
        "recipients[0].header_media": ["The template has no media header."],
    }


def test_unknown_and_static_button_indexes_are_refused(api, channel, templates):
    recipients = [recipient(0, buttons={"1": "ok", "0": "reply", "2": "call", "7": "nothing"})]
    details = details_of(post(api, body_for(channel, URL_TEMPLATE, recipients)))
    assert details == {
        "recipients[0].buttons.0": ["The template's QUICK_REPLY button takes no parameter."],
        "recipients[0].buttons.2": ["The template's PHONE_NUMBER button takes no parameter."],
        "recipients[0].buttons.7": ["The template has no button with this index."],
    }


def test_codes_are_at_most_15_characters(api, channel, templates):
    details = details_of(post(api, body_for(channel, AUTH_TEMPLATE, [{"to": NUMBERS[0], "buttons": {"0": "1" * 16}}])))
    assert details == {"recipients[0].buttons.0": ["At most 15 characters for the one-time-code button."]}
    details = details_of(
        post(api, body_for(channel, COUPON_TEMPLATE, [{"to": NUMBERS[0], "buttons": {"0": "C" * 16}}]))
    )
    assert details == {"recipients[0].buttons.0": ["At most 15 characters for the copy-code button."]}


def test_url_suffix_is_bounded_by_the_whole_url(api, channel, templates):
    # https://shop.example/track/ is 27 characters: the suffix may be 2000 - 27.
    ok = [recipient(0, buttons={"1": "x" * 1973})]
    too_long = [recipient(0, buttons={"1": "x" * 1974})]
    details = details_of(post(api, body_for(channel, URL_TEMPLATE, too_long)))
    assert details == {"recipients[0].buttons.1": ["At most 1973 characters for the URL button."]}
    assert post(api, body_for(channel, URL_TEMPLATE, ok)).status_code == 202


# ---- hostile shapes -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "media,path,message",
    [
        ("https://cdn.example/a.png", "header_media", 'Must be an object {"type", "link" or "id", "filename"?}.'),
        ([IMAGE], "header_media", 'Must be an object {"type", "link" or "id", "filename"?}.'),
        ({"link": "https://cdn.example/a.png"}, "header_media.type", "This field is required."),
        (
            {"type": "audio", "link": "https://c.example/a"},
            "header_media.type",
            "Must be one of image, video, document.",
        ),
        (
            {"type": ["image"], "link": "https://c.example/a"},
            "header_media.type",
            "Must be one of image, video, document.",
        ),
        ({"type": "image"}, "header_media", "Give exactly one of link and id."),
        (
            {"type": "image", "link": "https://c.example/a", "id": "12"},
            "header_media",
            "Give exactly one of link and id, not both.",
        ),
        ({"type": "image", "link": "http://c.example/a"}, "header_media.link", None),
        ({"type": "image", "link": "ftp://c.example/a"}, "header_media.link", None),
        ({"type": "image", "link": "https:///nohost"}, "header_media.link", None),
        ({"type": "image", "link": "https://[::1"}, "header_media.link", None),
        ({"type": "image", "link": "https://c.example/a b"}, "header_media.link", None),
        ({"type": "image", "link": "https://c.example/\x00"}, "header_media.link", None),
        ({"type": "image", "link": "https://c.example/" + "a" * 2100}, "header_media.link", "At most 2048 characters."),
        ({"type": "image", "link": 12}, "header_media.link", "Must be a string: an https URL."),
        ({"type": "image", "id": 12}, "header_media.id", "Must be Meta's media id: a string of digits."),
        ({"type": "image", "id": "abc"}, "header_media.id", "Must be Meta's media id: a string of digits."),
        ({"type": "image", "id": "١٢٣"}, "header_media.id", "Must be Meta's media id: a string of digits."),
        ({"type": "image", "id": "1" * 65}, "header_media.id", "At most 64 characters."),
        (
            {"type": "image", "link": "https://c.example/a", "filename": "a.png"},
            "header_media.filename",
            "Only a document has a filename.",
        ),
        ({"type": "image", "link": "https://c.example/a", "caption": "x"}, "header_media.caption", "Unknown field."),
    ],
)
def test_bad_header_media_shapes(api, channel, templates, media, path, message):
    details = details_of(post(api, body_for(channel, IMAGE_TEMPLATE, [recipient(0)], header_media=media)))
    assert path in details, details
    if message:
        assert details[path] == [message]


@pytest.mark.parametrize(
    "filename,message",
    [
        (12, "Must be a non-empty string."),
        ("  ", "Must be a non-empty string."),
        ("a" * 241, "At most 240 characters."),
        ("a\nb.pdf", "May not contain control characters."),
    ],
)
def test_bad_document_filenames(api, channel, templates, filename, message):
    media = {"type": "document", "link": "https://c.example/i.pdf", "filename": filename}
    details = details_of(post(api, body_for(channel, DOCUMENT_TEMPLATE, [recipient(0, header_media=media)])))
    assert details == {"recipients[0].header_media.filename": [message]}


@pytest.mark.parametrize(
    "buttons,path,message",
    [
        (["A-1"], "recipients[0].buttons", 'Must be an object of strings by button index, e.g. {"0": "ABC123"}.'),
        ("A-1", "recipients[0].buttons", 'Must be an object of strings by button index, e.g. {"0": "ABC123"}.'),
        ({"1": 12}, "recipients[0].buttons.1", "Must be a string."),
        ({"1": None}, "recipients[0].buttons.1", "Must be a string."),
        ({"1": {"text": "x"}}, "recipients[0].buttons.1", "Must be a string."),
        ({"1": " "}, "recipients[0].buttons.1", "May not be blank."),
        ({"1": "x" * 5000}, "recipients[0].buttons.1", "At most 2000 characters."),
        ({"1": "a\x00b"}, "recipients[0].buttons.1", "May not contain control characters."),
        ({"url": "x"}, "recipients[0].buttons.url", "Keys are button indexes: 0 to 9."),
        ({"-1": "x"}, "recipients[0].buttons.-1", "Keys are button indexes: 0 to 9."),
        ({"01": "x"}, "recipients[0].buttons.01", "Keys are button indexes: 0 to 9."),
        ({"10": "x"}, "recipients[0].buttons.10", "Keys are button indexes: 0 to 9."),
        ({"１": "x"}, "recipients[0].buttons.１", "Keys are button indexes: 0 to 9."),
        ({str(i): "x" for i in range(11)}, "recipients[0].buttons", "At most 10 buttons."),
    ],
)
def test_bad_button_shapes(api, channel, templates, buttons, path, message):
    details = details_of(post(api, body_for(channel, URL_TEMPLATE, [recipient(0, buttons=buttons)])))
    assert details[path] == [message], details


def test_every_bad_recipient_is_reported_at_once(api, channel, templates):
    recipients = [
        recipient(0, header_media={"type": "image", "link": "https://c.example/a", "id": "1"}),
        recipient(1),
        recipient(2, header_media="x"),
        recipient(3, header_media={"type": "image", "id": "1"}),
    ]
    details = details_of(post(api, body_for(channel, IMAGE_TEMPLATE, recipients, header_media={"type": "gif"})))
    assert set(details) == {
        "header_media",
        "header_media.type",
        "recipients[0].header_media",
        "recipients[2].header_media",
    }


def test_huge_number_of_bad_button_values_is_answered_not_crashed(api, channel, templates):
    recipients = [recipient(i, buttons={"1": "y" * 10_000}) for i in range(500)]
    details = details_of(post(api, body_for(channel, URL_TEMPLATE, recipients)))
    assert len(details) == 500
    assert details["recipients[499].buttons.1"] == ["At most 2000 characters."]
