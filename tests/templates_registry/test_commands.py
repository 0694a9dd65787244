"""create_channel, create_template, sync_templates: the value last on stdout; bad arguments fail."""

import re
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from templates_registry.models import Channel, Template
from tokens.models import Organization

pytestmark = pytest.mark.django_db


def run(*args: str) -> str:
    out = StringIO()
    call_command(*args, stdout=out, stderr=StringIO())
    return out.getvalue().strip().splitlines()[-1]


CHANNEL_ARGS = ["--phone-number-id", "100000000000001", "--waba-id", "200000000000001", "--access-token", "EAAG"]


def test_create_channel_creates_the_organization_and_prints_the_id(db):
    channel_id = run("create_channel", "--org", "Acme", *CHANNEL_ARGS)
    assert re.fullmatch(r"[0-9a-f]{24}", channel_id)
    channel = Channel.objects.get(pk=channel_id)
    assert channel.organization.name == "Acme" and channel.max_mps == 80 and channel.access_token == "EAAG"


def test_create_channel_reuses_an_existing_organization(org):
    run("create_channel", "--org", "Acme", *CHANNEL_ARGS, "--max-mps", "250")
    assert Organization.objects.count() == 1
    assert Channel.objects.get().max_mps == 250


@pytest.mark.parametrize("max_mps", ["0", "1001", "fast"])
def test_create_channel_bad_max_mps_fails_and_leaves_nothing(db, max_mps):
    with pytest.raises(CommandError):
        run("create_channel", "--org", "Acme", *CHANNEL_ARGS, "--max-mps", max_mps)
    assert not Channel.objects.exists() and not Organization.objects.exists()


def test_create_channel_duplicate_phone_number_id_fails(channel):
    with pytest.raises(CommandError, match="already exists"):
        run("create_channel", "--org", "Acme", *CHANNEL_ARGS)


def test_create_channel_missing_argument_fails(db):
    with pytest.raises(CommandError):
        run("create_channel", "--org", "Acme")


def test_create_template_extracts_named_variables(channel):
    template_id = run(
        "create_template",
        "--channel",
        channel.id,
        "--name",
        "welcome_v2",
        "--language",
        "es",
        "--body",
        "Hola {{nombre}}, tu saldo es {{monto}}",
    )
    template = Template.objects.get(pk=int(template_id))
    assert template.variables == ["nombre", "monto"]
    assert template.parameter_format == "NAMED" and template.status == "APPROVED"
    assert template.components == [{"type": "BODY", "text": "Hola {{nombre}}, tu saldo es {{monto}}"}]


def test_create_template_positional_with_header_and_status(channel):
    template_id = run(
        "create_template",
        "--channel",
        channel.phone_number_id,
        "--name",
        "order_update",
        "--language",
        "en_US",
        "--header",
        "Order {{1}}",
        "--body",
        "Your order {{1}} ships on {{2}}",
        "--status",
        "pending",
    )
    template = Template.objects.get(pk=int(template_id))
    assert template.parameter_format == "POSITIONAL"
    assert template.header_variables == ["1"] and template.body_variables == ["1", "2"]
    assert template.components[0] == {"type": "HEADER", "format": "TEXT", "text": "Order {{1}}"}
    assert template.status == "PENDING"


@pytest.mark.parametrize(
    "extra",
    [
        ["--status", "GREAT"],
        ["--name", "Bad Name"],
        ["--body", "Hola {{nombre}} {{1}}"],
    ],
)
def test_create_template_bad_arguments_fail(channel, extra):
    args = ["--channel", channel.id, "--name", "ok", "--language", "es", "--body", "Hola {{nombre}}"]
    for flag, value in zip(extra[::2], extra[1::2], strict=True):
        if flag in args:
            args[args.index(flag) + 1] = value
        else:
            args += [flag, value]
    with pytest.raises(CommandError):
        run("create_template", *args)
    assert not Template.objects.exists()


def test_create_template_unknown_channel_fails(db):
    with pytest.raises(CommandError, match="No channel"):
        run("create_template", "--channel", "f" * 24, "--name", "x", "--language", "es", "--body", "b")


def test_sync_templates_prints_the_number_synced(channel, fake_graph):
    assert run("sync_templates", "--channel", channel.id) == "3"
    assert Template.objects.filter(waba_id=channel.waba_id).count() == 3
    # a second sync updates the same rows
    assert run("sync_templates", "--channel", channel.id) == "3"
    assert Template.objects.count() == 3


def test_sync_templates_graph_error_is_a_command_error(channel, fake_graph):
    fake_graph.fail_with = (500, {"error": {"message": "Service temporarily unavailable", "code": 2}})
    with pytest.raises(CommandError, match="HTTP 500"):
        run("sync_templates", "--channel", channel.id)


def test_sync_templates_unknown_channel_fails(db):
    with pytest.raises(CommandError, match="No channel"):
        run("sync_templates", "--channel", "nope")
