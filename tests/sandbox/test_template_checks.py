"""The sandbox checks a registry template's media header and dynamic buttons as Meta does (132012 / 131008)."""

import pytest

from tests.broadcasts.components_support import AUTH_TEMPLATE, COUPON_TEMPLATE, IMAGE_TEMPLATE, URL_TEMPLATE
from tests.sandbox.support import message, send
from whatsapp.errors import parse_graph_error

HEADER = {"type": "header", "parameters": [{"type": "image", "image": {"link": "https://cdn.example/a.png"}}]}
BODY = {"type": "body", "parameters": [{"type": "text", "text": "Ana"}]}


@pytest.fixture
def registry(sandbox):
    sandbox.set_templates([dict(t) for t in (IMAGE_TEMPLATE, URL_TEMPLATE, COUPON_TEMPLATE, AUTH_TEMPLATE)])
    return sandbox


def template_send(sandbox, item, components):
    body = message(template={"name": item["name"], "language": {"code": item["language"]}, "components": components})
    return send(sandbox, body)


def error_code(response) -> str:
    assert response.status_code == 400, response.text
    return parse_graph_error(response.status_code, response.json()).code


@pytest.mark.parametrize(
    "components",
    [
        [BODY],
        [{"type": "header", "parameters": [{"type": "video", "video": {"link": "https://c.example/v.mp4"}}]}, BODY],
        [{"type": "header", "parameters": [{"type": "image", "image": {}}]}, BODY],
        [{"type": "header", "parameters": []}, BODY],
    ],
)
def test_media_header_without_its_parameter_is_132012(registry, components):
    assert error_code(template_send(registry, IMAGE_TEMPLATE, components)) == "132012"
    [record] = registry.requests()
    assert record["outcome"] == "error:132012"


def test_media_header_with_link_or_id_is_accepted(registry):
    assert template_send(registry, IMAGE_TEMPLATE, [HEADER, BODY]).status_code == 200
    by_id = {"type": "header", "parameters": [{"type": "image", "image": {"id": "123"}}]}
    assert template_send(registry, IMAGE_TEMPLATE, [by_id, BODY]).status_code == 200


@pytest.mark.parametrize(
    "button",
    [
        None,
        {"type": "button", "sub_type": "url", "index": "0", "parameters": [{"type": "text", "text": "A-1"}]},
        {"type": "button", "sub_type": "url", "index": "1", "parameters": []},
        {"type": "button", "sub_type": "quick_reply", "index": "1", "parameters": [{"type": "text", "text": "A"}]},
    ],
)
def test_dynamic_url_button_without_its_parameter_is_131008(registry, button):
    components = [BODY] + ([button] if button else [])
    assert error_code(template_send(registry, URL_TEMPLATE, components)) == "131008"


def test_dynamic_url_button_with_its_parameter_is_accepted(registry):
    button = {"type": "button", "sub_type": "url", "index": "1", "parameters": [{"type": "text", "text": "A-1"}]}
    assert template_send(registry, URL_TEMPLATE, [BODY, button]).status_code == 200


def test_coupon_and_authentication_codes_are_required(registry):
    coupon = {"type": "button", "sub_type": "copy_code", "index": "0", "parameters": [{"type": "text", "text": "X"}]}
    assert error_code(template_send(registry, COUPON_TEMPLATE, [coupon])) == "131008"
    coupon["parameters"] = [{"type": "coupon_code", "coupon_code": "DESC15"}]
    assert template_send(registry, COUPON_TEMPLATE, [coupon]).status_code == 200

    code = {"type": "button", "sub_type": "url", "index": "0", "parameters": [{"type": "text", "text": "123456"}]}
    assert error_code(template_send(registry, AUTH_TEMPLATE, [code])) == "131008"  # no body code
    assert error_code(template_send(registry, AUTH_TEMPLATE, [BODY])) == "131008"  # no button code
    assert template_send(registry, AUTH_TEMPLATE, [BODY, code]).status_code == 200


def test_templates_the_registry_does_not_hold_are_not_checked(registry):
    body = message(template={"name": "ad_hoc", "language": {"code": "es"}, "components": []})
    assert send(registry, body).status_code == 200
