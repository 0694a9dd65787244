"""BSUID recipients and MARKETING_BLOCKED_REGIONS for real (docs/rules.md): broadcasts created through the service,
a Celery worker process, the sandbox over HTTP recording every body it received."""

import pytest

from broadcasts import services
from broadcasts.models import Broadcast, Send
from templates_registry.models import Template
from tests.broadcasts.counts_support import assert_counts_exact
from tests.broadcasts.delivery.support import settle

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

NUMBERS = ["+573001230001", "+573001230002"]
BSUIDS = ["CO.13491208655302741918", "ES.ENT.a1B2c3"]
US_NUMBER, CA_NUMBER, US_BSUID = "+14155552671", "+16135550123", "US.777"


def create(channel, template, recipients: list[dict]) -> Broadcast:
    body = {
        "template_name": template.name,
        "language": template.language,
        "channel_id": channel.id,
        "recipients": [{**r, "variables": {"nombre": "Ana", "monto": "1"}} for r in recipients],
    }
    created = services.broadcast_create(organization=channel.organization, body=body)
    return Broadcast.objects.get(pk=created.body["broadcast_id"])


def bodies_by_address(sandbox) -> dict[str, dict]:
    out = {}
    for request in sandbox.requests():
        body = request["body"]
        out[body.get("to") or body.get("recipient")] = body
    return out


def test_numbers_go_as_to_and_bsuids_as_recipient(channel, template, delivery_sandbox, worker, delivery_settings):
    # Given a MARKETING broadcast mixing numbers and BSUIDs, created through the service (validation and COPY)
    recipients = [{"to": NUMBERS[0]}, {"user_id": BSUIDS[0]}, {"to": NUMBERS[1]}, {"user_id": BSUIDS[1]}]
    broadcast = create(channel, template, recipients)

    # When it is delivered (the service enqueued it on commit)
    settle(broadcast, timeout=60)

    # Then Meta received one body per recipient: numbers under "to", BSUIDs under "recipient", nothing else differing
    bodies = bodies_by_address(delivery_sandbox)
    assert len(delivery_sandbox.requests()) == 4 and set(bodies) == {*NUMBERS, *BSUIDS}
    for index, recipient in enumerate(recipients):
        address = recipient.get("to") or recipient["user_id"]
        body = bodies[address]
        key = "to" if "to" in recipient else "recipient"
        assert body[key] == address and ({"to", "recipient"} - {key}).isdisjoint(body)
        assert body["biz_opaque_callback_data"] == f"{broadcast.id}:{index}"
        assert body["messaging_product"] == "whatsapp" and body["recipient_type"] == "individual"
        assert body["template"]["name"] == template.name
    assert {k: v for k, v in bodies[BSUIDS[0]].items() if k not in ("recipient", "biz_opaque_callback_data")} == {
        k: v for k, v in bodies[NUMBERS[0]].items() if k not in ("to", "biz_opaque_callback_data")
    }

    # And every send is SENT, a BSUID's stored as its to and user_id
    sends = {s.to: s for s in Send.objects.filter(broadcast=broadcast)}
    assert {s.status for s in sends.values()} <= {"SENT", "DELIVERED", "READ"}
    assert all(s.message_id for s in sends.values())
    assert [sends[b].user_id for b in BSUIDS] == BSUIDS
    assert_counts_exact(broadcast)


def test_us_marketing_sends_fail_region_blocked_without_a_post(
    channel, template, delivery_sandbox, worker, delivery_settings
):
    # Given a MARKETING broadcast to a US number, a US BSUID, a Canadian (+1) and a Colombian number
    recipients = [{"to": US_NUMBER}, {"user_id": US_BSUID}, {"to": CA_NUMBER}, {"to": NUMBERS[0]}]
    broadcast = create(channel, template, recipients)

    # When it is delivered (MARKETING_BLOCKED_REGIONS: US by default, in the worker too)
    settle(broadcast, timeout=60)

    # Then the US ones end FAILED marketing_region_blocked, not retryable, never posted; the others go
    sends = {s.to: s for s in Send.objects.filter(broadcast=broadcast)}
    for address in (US_NUMBER, US_BSUID):
        send = sends[address]
        assert send.status == "FAILED" and send.error_code == "marketing_region_blocked"
        assert send.error_retryable is False and send.message_id is None
    assert set(bodies_by_address(delivery_sandbox)) == {CA_NUMBER, NUMBERS[0]}
    assert assert_counts_exact(broadcast)[broadcast.id]["failed"] == 2

    # And a UTILITY broadcast to the same US recipients goes out
    utility = Template.objects.create(
        waba_id=template.waba_id,
        name="order_update",
        language="es",
        status=Template.Status.APPROVED,
        category="UTILITY",
        parameter_format=template.parameter_format,
        components=template.components,
        body_variables=template.body_variables,
    )
    delivery_sandbox.reset()
    second = create(channel, utility, [{"to": US_NUMBER}, {"user_id": US_BSUID}])
    settle(second, timeout=60)
    assert set(Send.objects.filter(broadcast=second).values_list("status", flat=True)) <= {"SENT", "DELIVERED", "READ"}
    assert set(bodies_by_address(delivery_sandbox)) == {US_NUMBER, US_BSUID}
