"""Template components for real (docs/api.md and docs/rules.md): templates synced from the sandbox's
message_templates, broadcasts
POSTed to the API, a Celery worker posting to the sandbox over HTTP. The sandbox checks media headers and dynamic
buttons against its registry as Meta does (132012 / 131008), so an accepted send proves its parameters arrived;
each test reads the exact JSON Meta received."""

import orjson
import pytest
from django.core.management import call_command

from broadcasts.models import Broadcast, Send
from templates_registry.models import Template
from tests.broadcasts.components_support import ALL, AUTH_TEMPLATE, IMAGE_TEMPLATE, URL_TEMPLATE
from tests.broadcasts.delivery.support import settle
from tests.broadcasts.test_api_create import URL
from tests.delivery_support import numbers

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def synced(channel, delivery_sandbox, delivery_settings):
    """The sandbox serves the component templates for the channel's WABA; sync_templates brings them in."""
    delivery_sandbox.set_templates([dict(item) for item in ALL], waba_id=channel.waba_id)
    call_command("sync_templates", "--channel", channel.id)
    return delivery_sandbox


def create(api, channel, item, recipients, **extra) -> Broadcast:
    body = {
        "template_name": item["name"],
        "language": item["language"],
        "channel_id": channel.id,
        "recipients": recipients,
        **extra,
    }
    response = api.post(URL, orjson.dumps(body), content_type="application/json")
    assert response.status_code == 202, response.content
    return Broadcast.objects.get(id=response.json()["broadcast_id"])


def received(sandbox, broadcast) -> dict[str, dict]:
    """The template object of each POST Meta received for the broadcast's numbers, by number (without +)."""
    tos = set(Send.objects.filter(broadcast=broadcast).values_list("to", flat=True))
    bodies = {}
    for request in sandbox.requests():
        body = request["body"] if isinstance(request["body"], dict) else orjson.loads(request["body"])
        if body["to"] in tos:
            assert request["outcome"] == "ok", request
            assert (body["messaging_product"], body["type"], body["recipient_type"]) == (
                "whatsapp",
                "template",
                "individual",
            )
            bodies[request["to"]] = body["template"]
    assert len(bodies) == len(tos)
    return bodies


def assert_all_sent(broadcast):
    broadcast = settle(broadcast)
    assert broadcast.status == "COMPLETED"
    assert set(Send.objects.filter(broadcast=broadcast).values_list("status", "attempts")) == {("SENT", 1)}


def test_media_header_with_a_per_recipient_override(api, channel, synced, worker):
    a, b, c = numbers(3, start=100)
    override = {"type": "image", "id": "4490709327384033"}
    broadcast = create(
        api,
        channel,
        IMAGE_TEMPLATE,
        [
            {"to": a, "variables": {"1": "Ana"}},
            {"to": b, "variables": {"1": "Bea"}, "header_media": override},
            {"to": c, "variables": {"1": "Cris"}},
        ],
        header_media={"type": "image", "link": "https://cdn.example/promo.png"},
    )
    assert_all_sent(broadcast)
    bodies = received(synced, broadcast)

    def expected(name, media):
        return {
            "name": "promo_image",
            "language": {"code": "es"},
            "components": [
                {"type": "header", "parameters": [{"type": "image", "image": media}]},
                {"type": "body", "parameters": [{"type": "text", "text": name}]},
            ],
        }

    assert bodies[a[1:]] == expected("Ana", {"link": "https://cdn.example/promo.png"})
    assert bodies[b[1:]] == expected("Bea", {"id": "4490709327384033"})
    assert bodies[c[1:]] == expected("Cris", {"link": "https://cdn.example/promo.png"})


def test_dynamic_url_button(api, channel, synced, worker):
    a, b = numbers(2, start=200)
    broadcast = create(
        api,
        channel,
        URL_TEMPLATE,
        [
            {"to": a, "variables": {"1": "Ana"}, "buttons": {"1": "A-1001"}},
            {"to": b, "variables": {"1": "Bea"}, "buttons": {"1": "B-2002?ref=wa"}},
        ],
    )
    assert_all_sent(broadcast)
    bodies = received(synced, broadcast)
    for number, name, suffix in ((a, "Ana", "A-1001"), (b, "Bea", "B-2002?ref=wa")):
        assert bodies[number[1:]] == {
            "name": "order_tracking",
            "language": {"code": "en_US"},
            "components": [
                {"type": "body", "parameters": [{"type": "text", "text": name}]},
                {"type": "button", "sub_type": "url", "index": "1", "parameters": [{"type": "text", "text": suffix}]},
            ],
        }


def test_authentication_template_carries_the_code_in_body_and_button(api, channel, synced, worker):
    [a] = numbers(1, start=300)
    broadcast = create(api, channel, AUTH_TEMPLATE, [{"to": a, "buttons": {"0": "839201"}}])
    assert_all_sent(broadcast)
    assert received(synced, broadcast)[a[1:]] == {
        "name": "login_code",
        "language": {"code": "en_US"},
        "components": [
            {"type": "body", "parameters": [{"type": "text", "text": "839201"}]},
            {"type": "button", "sub_type": "url", "index": "0", "parameters": [{"type": "text", "text": "839201"}]},
        ],
    }


def test_the_sandbox_refuses_a_media_template_sent_without_its_header(channel, synced, worker):
    """What happened before this work: our registry without the header (as a text-only sync knew it) sends no header
    parameter, and Meta (the sandbox) answers 132012; the send fails with Meta's code."""
    from tests.delivery_support import broadcast_make

    template = Template.objects.get(name="promo_image")
    template.components = [c for c in template.components if c["type"] != "HEADER"]
    template.save()
    [a] = numbers(1, start=400)
    broadcast = broadcast_make(channel=channel, template=template, recipients=[(a, {"1": "Ana"})])
    from broadcasts.queue import enqueue_dispatch

    enqueue_dispatch(broadcast.id)
    broadcast = settle(broadcast)
    send = Send.objects.get(broadcast=broadcast)
    assert (send.status, send.error_code) == ("FAILED", "132012")
    [request] = [r for r in synced.requests() if r["to"] == a[1:]]
    assert request["outcome"] == "error:132012"


def test_sync_templates_learns_header_formats_and_buttons(channel, synced):
    from whatsapp.template_components import ButtonSpec

    learned = {
        t.name: (t.header_format, t.buttons, t.category) for t in Template.objects.filter(waba_id=channel.waba_id)
    }
    assert learned == {
        "promo_image": ("IMAGE", (), "MARKETING"),
        "invoice_pdf": ("DOCUMENT", (), "UTILITY"),
        "order_tracking": (
            "",
            (
                ButtonSpec(0, "QUICK_REPLY", "static"),
                ButtonSpec(1, "URL", "url", 2000 - len("https://shop.example/track/")),
                ButtonSpec(2, "PHONE_NUMBER", "static"),
            ),
            "UTILITY",
        ),
        "coupon_offer": ("", (ButtonSpec(0, "COPY_CODE", "copy_code", 15),), "MARKETING"),
        "login_code": ("", (ButtonSpec(0, "URL", "otp", 15),), "AUTHENTICATION"),
    }
    # Media headers carry no text variables; the authentication body's {{1}} is the code.
    assert Template.objects.get(name="promo_image").body_variables == ["1"]
    assert Template.objects.get(name="promo_image").header_variables == []
