"""Channel and template services: validation, upsert, variables, and the sync from the Graph API."""

import socket

import pytest

from core.errors import ApplicationError
from templates_registry.models import Channel, Template
from templates_registry.selectors import channel_find
from templates_registry.services import channel_create, template_register, template_upsert, templates_sync

from .conftest import WABA_ID

pytestmark = pytest.mark.django_db


def test_channel_create_gives_an_object_id(org):
    channel = channel_create(
        organization=org, phone_number_id="100000000000009", waba_id="200000000000009", access_token="EAAG", max_mps=20
    )
    assert len(channel.id) == 24 and all(c in "0123456789abcdef" for c in channel.id)
    assert Channel.objects.get(pk=channel.id).max_mps == 20


@pytest.mark.parametrize(
    ("field", "kwargs"),
    [
        ("phone_number_id", {"phone_number_id": "+1 555"}),
        ("waba_id", {"waba_id": ""}),
        ("access_token", {"access_token": "  "}),
        ("max_mps", {"max_mps": 0}),
        ("max_mps", {"max_mps": 1001}),
    ],
)
def test_channel_create_refuses_bad_input(org, field, kwargs):
    args = {"phone_number_id": "1", "waba_id": "2", "access_token": "t", "max_mps": 80, **kwargs}
    with pytest.raises(ApplicationError) as info:
        channel_create(organization=org, **args)
    assert field in info.value.details
    assert not Channel.objects.exists()


def test_channel_create_same_phone_number_id_is_a_conflict(channel, other_org):
    with pytest.raises(ApplicationError) as info:
        channel_create(organization=other_org, phone_number_id=channel.phone_number_id, waba_id="3", access_token="t")
    assert info.value.status == 409


def test_channel_find_by_id_or_phone_number_id_within_the_organization(channel, other_org):
    assert channel_find(ref=channel.id) == channel
    assert channel_find(ref=channel.phone_number_id) == channel
    assert channel_find(ref=channel.id, organization=other_org) is None
    assert channel_find(ref=channel.phone_number_id, organization=other_org) is None
    assert channel_find(ref="") is None


def test_template_register_named_with_header(channel):
    template, created = template_register(
        channel=channel, name="welcome_v3", language="es", header="Hola {{nombre}}", body="Saldo {{monto}}, {{nombre}}"
    )
    assert created
    assert template.components == [
        {"type": "HEADER", "format": "TEXT", "text": "Hola {{nombre}}"},
        {"type": "BODY", "text": "Saldo {{monto}}, {{nombre}}"},
    ]
    assert template.header_variables == ["nombre"]
    assert template.body_variables == ["monto", "nombre"]
    assert template.variables == ["nombre", "monto"]
    assert template.parameter_format == "NAMED"
    assert template.waba_id == channel.waba_id and template.status == "APPROVED"


def test_template_register_positional(channel):
    template, _ = template_register(channel=channel, name="pos", language="en_US", body="Hi {{2}} and {{1}}")
    assert template.parameter_format == "POSITIONAL"
    assert template.body_variables == ["1", "2"]


def test_template_register_again_updates_in_place(channel):
    first, _ = template_register(channel=channel, name="t", language="es", body="Hola {{a}}")
    again, created = template_register(channel=channel, name="t", language="es", body="Hola {{b}}", status="PAUSED")
    assert not created and again.pk == first.pk
    assert again.body_variables == ["b"] and again.status == "PAUSED"


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"name": "Welcome V2"}, "name"),
        ({"language": "spanish"}, "language"),
        ({"body": "  "}, "body"),
        ({"body": "x" * 1025}, "body"),
        ({"header": "h" * 61}, "header"),
        ({"status": "MAYBE"}, "status"),
    ],
)
def test_template_register_refuses_bad_input(channel, kwargs, field):
    args = {"name": "ok_name", "language": "es", "body": "Hola {{nombre}}", **kwargs}
    with pytest.raises(ApplicationError) as info:
        template_register(channel=channel, **args)
    assert field in info.value.details
    assert not Template.objects.exists()


def test_template_with_mixed_placeholders_is_refused(channel):
    with pytest.raises(ApplicationError, match="mixed"):
        template_register(channel=channel, name="mixed", language="es", body="Hola {{nombre}} {{1}}")


def test_template_upsert_keeps_meta_parameter_format_and_id():
    template, _ = template_upsert(
        waba_id="9",
        name="n",
        language="es",
        components=[{"type": "BODY", "text": "no variables"}],
        parameter_format="POSITIONAL",
        meta_id="777",
        status="approved",
    )
    assert (template.parameter_format, template.meta_id, template.status) == ("POSITIONAL", "777", "APPROVED")


def test_templates_sync_reads_every_page_and_upserts(channel, fake_graph):
    # given a stale local copy of welcome_v2
    Template.objects.create(waba_id=WABA_ID, name="welcome_v2", language="es", status="PAUSED", components=[])
    # when the channel's templates are synced
    assert templates_sync(channel=channel) == 3
    # then both pages were read, with the channel's token
    assert len(fake_graph.requests) == 2
    assert {r["authorization"] for r in fake_graph.requests} == {f"Bearer {channel.access_token}"}
    assert "components" in fake_graph.requests[0]["query"]["fields"][0]
    # and each template is stored with Meta's status, components, format and variables
    by_name = {t.name: t for t in Template.objects.filter(waba_id=WABA_ID)}
    assert set(by_name) == {"welcome_v2", "order_update", "promo_image"}
    welcome = by_name["welcome_v2"]
    assert (welcome.status, welcome.meta_id, welcome.category) == ("APPROVED", "1111", "MARKETING")
    assert welcome.header_variables == ["nombre"] and welcome.body_variables == ["nombre", "monto"]
    assert welcome.components[1]["example"]["body_text_named_params"][0]["param_name"] == "nombre"
    order = by_name["order_update"]
    assert (order.status, order.parameter_format, order.language) == ("PENDING", "POSITIONAL", "en_US")
    assert order.body_variables == ["1", "2"]
    promo = by_name["promo_image"]
    assert promo.header_variables == [] and promo.parameter_format == "POSITIONAL"
    assert promo.status == "REJECTED"
    assert Template.objects.count() == 3


def test_templates_sync_meta_error_changes_nothing(channel, fake_graph):
    fake_graph.fail_with = (400, {"error": {"message": "Invalid OAuth access token.", "code": 190}})
    with pytest.raises(ApplicationError, match="Invalid OAuth access token"):
        templates_sync(channel=channel)
    assert not Template.objects.exists()


def test_templates_sync_refuses_paging_to_another_host(channel, fake_graph):
    fake_graph.next_url_override = "http://198.51.100.7/v23.0/x?after=CURSOR2"
    with pytest.raises(ApplicationError, match="another host"):
        templates_sync(channel=channel)
    assert not Template.objects.exists()


def test_templates_sync_unreachable_graph_is_a_clear_error(channel, settings):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # nothing listens there once the socket is closed
    settings.WHATSAPP_GRAPH_URL = f"http://127.0.0.1:{port}/v23.0"
    with pytest.raises(ApplicationError, match="could not be reached"):
        templates_sync(channel=channel)
