"""The spending cap for real (docs/rules.md): a Celery worker process posting to the sandbox over HTTP stops at the
send that would pass ``max_cost``, pauses the broadcast ``budget_exceeded``, and resume is refused."""

from decimal import Decimal

import pytest

from broadcasts import pricing
from broadcasts.models import Broadcast, Send, SendStatus
from broadcasts.services import broadcast_create, broadcast_resume
from core.errors import ConflictError
from tests.broadcasts.counts_support import assert_counts_exact
from tests.delivery_support import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

CARD = """country,category,price,currency
ES,MARKETING,0.0615,USD
MX,MARKETING,0.0305,USD
*,MARKETING,0.0600,USD
"""


def _body(channel, numbers, **extra):
    return {
        "template_name": "welcome_v2",
        "language": "es",
        "channel_id": channel.id,
        "recipients": [{"to": n, "variables": {"nombre": "Ana", "monto": "1"}} for n in numbers],
        **extra,
    }


def test_max_cost_pauses_at_the_send_that_would_pass_it(
    org, channel, template, delivery_sandbox, worker, delivery_settings
):
    # Given a card, and 40 recipients alternating ES (0.0615) and MX (0.0305): the running estimate after k sends
    pricing.rate_card_load(text=CARD)
    numbers = [f"+3461234{i:04d}" if i % 2 == 0 else f"+52551234{i:04d}" for i in range(40)]
    running, fits = Decimal(0), 0
    for n in numbers:
        price = Decimal("0.0615") if n.startswith("+34") else Decimal("0.0305")
        if running + price > Decimal("0.70"):
            break
        running += price
        fits += 1
    assert fits == 14  # 7 x 0.0615 + 7 x 0.0305 = 0.6440; the 15th (ES) would make 0.7055

    # When it is posted with max_cost 0.70 and goes out through the worker
    result = broadcast_create(organization=org, body=_body(channel, numbers, max_cost="0.70"))
    broadcast_id = result.body["broadcast_id"]

    # Then it pauses with budget_exceeded after exactly the sends that fit; nothing more is posted
    wait_for(
        lambda: Broadcast.objects.filter(id=broadcast_id, status="PAUSED").exists(),
        timeout=30,
        message="broadcast paused by its budget",
    )
    broadcast = Broadcast.objects.get(id=broadcast_id)
    assert broadcast.paused_reason["code"] == "budget_exceeded"
    wait_for(
        lambda: not Send.objects.filter(broadcast_id=broadcast_id, lease_expires_at__isnull=False).exists(),
        timeout=15,
        message="leases released",
    )
    posted = delivery_sandbox.requests()
    reserved = list(
        Send.objects.filter(broadcast_id=broadcast_id, price_reserved__isnull=False)
        .order_by("index")
        .values_list("index", "to", "status", "price_reserved")
    )
    assert len(posted) == fits, (broadcast.posted_cost, [r["to"] for r in posted], reserved)
    assert sorted(r["to"] for r in posted) == sorted(n.lstrip("+") for n in numbers[:fits])
    assert broadcast.posted_cost == running
    assert broadcast.cost_estimated == Decimal("0.0615") * 20 + Decimal("0.0305") * 20
    assert Send.objects.filter(broadcast_id=broadcast_id, status=SendStatus.SENT).count() == fits
    assert Send.objects.filter(broadcast_id=broadcast_id, status=SendStatus.PENDING).count() == 40 - fits
    assert Send.objects.filter(broadcast_id=broadcast_id, price_reserved__isnull=False).count() == fits
    assert_counts_exact(broadcast)

    # And resume is refused (a higher cap is not offered)
    with pytest.raises(ConflictError, match="max_cost"):
        broadcast_resume(broadcast_id=broadcast_id)
    assert len(delivery_sandbox.requests()) == fits


def test_without_max_cost_everything_goes_out(org, channel, template, delivery_sandbox, worker, delivery_settings):
    pricing.rate_card_load(text=CARD)
    numbers = [f"+3461234{i:04d}" for i in range(20)]
    result = broadcast_create(organization=org, body=_body(channel, numbers))
    broadcast_id = result.body["broadcast_id"]
    wait_for(
        lambda: Broadcast.objects.filter(id=broadcast_id, status="COMPLETED").exists(),
        timeout=30,
        message="broadcast completed",
    )
    assert len(delivery_sandbox.requests()) == 20
    broadcast = Broadcast.objects.get(id=broadcast_id)
    assert broadcast.posted_cost == 0 and broadcast.cost_estimated == Decimal("1.23")
    assert not Send.objects.filter(broadcast_id=broadcast_id, price_reserved__isnull=False).exists()
