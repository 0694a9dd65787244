"""What a template's components need at send time, and the components the builder sends for them (pure)."""

from types import SimpleNamespace

import pytest

from tests.broadcasts.components_support import AUTH_TEMPLATE, COUPON_TEMPLATE, URL_TEMPLATE
from whatsapp.payload import MissingVariablesError, TemplateMessageBuilder
from whatsapp.template_components import ButtonSpec, header_format, otp_index, template_buttons


def make(components, *, category="MARKETING", body=(), header=(), parameter_format="POSITIONAL"):
    return SimpleNamespace(
        name="t",
        language="es",
        parameter_format=parameter_format,
        header_variables=list(header),
        body_variables=list(body),
        header_format=header_format(components),
        buttons=template_buttons(components, category=category),
    )


@pytest.mark.parametrize(
    "components,expected",
    [
        ([], ""),
        ([{"type": "BODY", "text": "x"}], ""),
        ([{"type": "HEADER", "text": "Hi"}], "TEXT"),
        ([{"type": "header", "format": "image"}], "IMAGE"),
        ([{"type": "HEADER", "format": "VIDEO"}], "VIDEO"),
        ([{"type": "HEADER", "format": "DOCUMENT"}], "DOCUMENT"),
        ([{"type": "HEADER", "format": "LOCATION"}], "LOCATION"),
        ([{"type": "HEADER", "format": "SOMETHING_NEW"}], "TEXT"),
        ("not a list", ""),
        ([None, 3, {"type": "HEADER", "format": "IMAGE"}], "IMAGE"),
    ],
)
def test_header_format(components, expected):
    assert header_format(components) == expected


def test_buttons_by_index_with_what_they_take():
    assert template_buttons(URL_TEMPLATE["components"]) == (
        ButtonSpec(0, "QUICK_REPLY", "static"),
        ButtonSpec(1, "URL", "url", 1973),
        ButtonSpec(2, "PHONE_NUMBER", "static"),
    )
    assert template_buttons(COUPON_TEMPLATE["components"]) == (ButtonSpec(0, "COPY_CODE", "copy_code", 15),)
    # Meta shows an OTP button as URL once created; as created it is OTP.
    assert template_buttons(AUTH_TEMPLATE["components"], category="AUTHENTICATION") == (
        ButtonSpec(0, "URL", "otp", 15),
    )
    otp = [{"type": "BUTTONS", "buttons": [{"type": "OTP", "otp_type": "ONE_TAP", "text": "Autofill"}]}]
    assert otp_index(template_buttons(otp, category="AUTHENTICATION")) == 0
    static_url = [{"type": "BUTTONS", "buttons": [{"type": "URL", "text": "Web", "url": "https://x.example/"}]}]
    assert template_buttons(static_url) == (ButtonSpec(0, "URL", "static"),)
    assert template_buttons([{"type": "BUTTONS", "buttons": "junk"}]) == ()
    assert template_buttons([{"type": "BUTTONS", "buttons": [None]}]) == (ButtonSpec(0, "UNKNOWN", "static"),)


@pytest.mark.parametrize(
    "media,parameter",
    [
        (
            {"type": "image", "link": "https://c.example/a.png"},
            {"type": "image", "image": {"link": "https://c.example/a.png"}},
        ),
        ({"type": "video", "id": "77"}, {"type": "video", "video": {"id": "77"}}),
        (
            {"type": "document", "link": "https://c.example/i.pdf", "filename": "Factura.pdf"},
            {"type": "document", "document": {"link": "https://c.example/i.pdf", "filename": "Factura.pdf"}},
        ),
        ({"type": "document", "id": "5"}, {"type": "document", "document": {"id": "5"}}),
    ],
)
def test_media_headers(media, parameter):
    fmt = media["type"].upper()
    builder = TemplateMessageBuilder(
        make([{"type": "HEADER", "format": fmt}, {"type": "BODY", "text": "{{1}}"}], body=["1"])
    )
    components = builder.build("+1", {"1": "Ana"}, media)["template"]["components"]
    assert components == [
        {"type": "header", "parameters": [parameter]},
        {"type": "body", "parameters": [{"type": "text", "text": "Ana"}]},
    ]


def test_the_broadcast_media_is_the_default_and_a_send_overrides_it():
    template = make([{"type": "HEADER", "format": "IMAGE"}])
    builder = TemplateMessageBuilder(template, header_media={"type": "image", "link": "https://c.example/all.png"})
    default = builder.build("+1")["template"]["components"]
    own = builder.build("+1", None, {"type": "image", "id": "9"})["template"]["components"]
    assert default == [
        {"type": "header", "parameters": [{"type": "image", "image": {"link": "https://c.example/all.png"}}]}
    ]
    assert own == [{"type": "header", "parameters": [{"type": "image", "image": {"id": "9"}}]}]


def test_missing_media_and_buttons_are_named():
    template = make([{"type": "HEADER", "format": "VIDEO"}, *URL_TEMPLATE["components"][1:]])
    with pytest.raises(MissingVariablesError) as raised:
        TemplateMessageBuilder(template).build("+1", {}, None, {"0": "ignored"})
    assert raised.value.missing == ["header_media", "buttons.1"]


def test_buttons_and_coupon_components():
    builder = TemplateMessageBuilder(make(URL_TEMPLATE["components"], body=["1"]))
    assert builder.build("+1", {"1": "Ana"}, None, {"1": "A/1"})["template"]["components"][1] == {
        "type": "button",
        "sub_type": "url",
        "index": "1",
        "parameters": [{"type": "text", "text": "A/1"}],
    }
    coupon = TemplateMessageBuilder(make(COUPON_TEMPLATE["components"]))
    assert coupon.build("+1", None, None, {"0": "DESC15"})["template"]["components"] == [
        {
            "type": "button",
            "sub_type": "copy_code",
            "index": "0",
            "parameters": [{"type": "coupon_code", "coupon_code": "DESC15"}],
        }
    ]


def test_authentication_code_is_the_body_and_the_button():
    builder = TemplateMessageBuilder(make(AUTH_TEMPLATE["components"], category="AUTHENTICATION", body=["1"]))
    assert builder.variables == ()
    assert builder.build("+1", {}, None, {"0": "4242"})["template"]["components"] == [
        {"type": "body", "parameters": [{"type": "text", "text": "4242"}]},
        {"type": "button", "sub_type": "url", "index": "0", "parameters": [{"type": "text", "text": "4242"}]},
    ]
    with pytest.raises(MissingVariablesError):
        builder.build("+1", {"1": "4242"})


def test_a_template_without_components_knowledge_builds_as_before():
    template = SimpleNamespace(
        name="t", language="es", parameter_format="NAMED", header_variables=[], body_variables=["a"]
    )
    builder = TemplateMessageBuilder(template)
    assert builder.plain
    assert builder.build("+1", {"a": "x"}, {"type": "image", "id": "1"}, {"0": "y"})["template"]["components"] == [
        {"type": "body", "parameters": [{"type": "text", "parameter_name": "a", "text": "x"}]}
    ]
