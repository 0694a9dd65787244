"""The rate card's in_window_price, MARKETING_BLOCKED_REGIONS and BSUIDs in prices (docs/rules.md): load_rate_card,
the dry run and ``cost.estimated`` over the real rows (suppression list, customer-service windows), the region gate,
and the bill of a delivered BSUID send."""

from datetime import UTC, datetime
from decimal import Decimal

import orjson
import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from broadcasts import pricing
from broadcasts.delivery.claims import Claimed
from broadcasts.delivery.gates.admission import GateContext
from broadcasts.delivery.gates.region import region_gate
from broadcasts.models import Broadcast, CustomerWindow, RateCard, RateCardPrice, Send, Suppression
from broadcasts.rules.suppressions import number_hash
from broadcasts.status_updates.apply import sends_apply_statuses
from templates_registry.models import Template
from tests.broadcasts.test_api_create import URL, post
from tests.events.helpers import broadcast_with_sends
from whatsapp.inbound.statuses import status_update_parse

CARD = """country,category,price,currency,in_window_price
ES,MARKETING,0.0615,USD,0.0100
MX,MARKETING,0.0305,USD,
US,MARKETING,0.0250,USD,
*,MARKETING,0.0600,USD,
ES,UTILITY,0.0200,USD,
*,UTILITY,0.0100,USD,0.0040
*,AUTHENTICATION,0.0300,USD,
"""

ES_WINDOW, ES_SUPPRESSED, ES_PLAIN = "+34612345678", "+34612345679", "+34699000111"
GB_WINDOW = "+447400123456"
US_NUMBERS = ["+14155552671", "+14155552672"]
US_BSUID, MX_BSUID, ES_BSUID_WINDOW = "US.777", "MX.ENT.abc", "ES.4242"
RECIPIENTS = [
    {"to": ES_WINDOW},
    {"to": ES_SUPPRESSED},
    {"to": ES_PLAIN},
    {"to": GB_WINDOW},
    *({"to": n} for n in US_NUMBERS),
    {"user_id": US_BSUID},
    {"user_id": MX_BSUID},
    {"user_id": ES_BSUID_WINDOW},
]


def body(channel, **extra) -> dict:
    return {
        "template_name": "welcome_v2",
        "language": "es",
        "channel_id": channel.id,
        "recipients": [{**r, "variables": {"nombre": "Ana", "monto": "1"}} for r in RECIPIENTS],
        **extra,
    }


def card_file(tmp_path, text: str):
    path = tmp_path / "rates.csv"
    path.write_text(text)
    return str(path)


# --- load_rate_card ------------------------------------------------------------------------------


def test_load_rate_card_stores_the_in_window_prices(db, tmp_path):
    call_command("load_rate_card", "--file", card_file(tmp_path, CARD))
    stored = {(p.country, p.category): p.in_window_price for p in RateCardPrice.objects.all()}
    assert stored[("ES", "MARKETING")] == Decimal("0.0100")
    assert stored[("*", "UTILITY")] == Decimal("0.0040")
    assert stored[("MX", "MARKETING")] is None and len(stored) == 7
    # The column may come in any place, and the four-column card still loads
    moved = "in_window_price,country,category,price,currency\n0.5,ES,MARKETING,1,EUR\n"
    call_command("load_rate_card", "--file", card_file(tmp_path, moved))
    assert RateCardPrice.objects.get(card=pricing.rate_card_current()).in_window_price == Decimal("0.5")


@pytest.mark.parametrize(
    ("row", "words"),
    [
        ("ES,UTILITY,0.02,USD,-0.01", "in_window_price '-0.01' is not a non-negative decimal"),
        ("ES,UTILITY,0.02,USD,free", "in_window_price 'free' is not a non-negative decimal"),
        ("ES,UTILITY,0.02,USD,0.0000001", "at most 6 places"),
        ("ES,UTILITY,0.02,USD,1e3", "in_window_price '1e3'"),
        ("ES,UTILITY,0.02,USD,1000000", "in_window_price 1000000 is too large"),
        ("ES,UTILITY,0.02,USD", "expected 5 columns, got 4"),
    ],
)
def test_a_bad_in_window_price_names_its_line_and_loads_nothing(db, tmp_path, row, words):
    text = CARD + row + "\n"
    with pytest.raises(CommandError) as raised:
        call_command("load_rate_card", "--file", card_file(tmp_path, text))
    assert "line 9" in str(raised.value) and words in str(raised.value)
    assert RateCard.objects.count() == 0 and RateCardPrice.objects.count() == 0


def test_an_unknown_fifth_column_is_refused(db, tmp_path):
    with pytest.raises(CommandError, match="line 1: the header must be"):
        call_command("load_rate_card", "--file", card_file(tmp_path, "country,category,price,currency,note\n"))
    assert RateCard.objects.count() == 0


# --- the dry run and cost.estimated --------------------------------------------------------------


@pytest.fixture
def rules_rows(org, channel):
    """One suppressed ES number; open customer-service windows of an ES number, a GB number and an ES BSUID."""
    Suppression.objects.create(organization=org, to=ES_SUPPRESSED, to_hash=number_hash(ES_SUPPRESSED), source="api")
    for number in (ES_WINDOW, GB_WINDOW, ES_BSUID_WINDOW):
        CustomerWindow.objects.create(channel=channel, number=number, last_inbound_at=timezone.now())


def test_a_marketing_dry_run_matches_the_hand_computed_total(api, channel, template, rules_rows):
    pricing.rate_card_load(text=CARD)

    response = post(api, body(channel, dry_run=True))

    assert response.status_code == 200, response.content
    estimate = response.json()["estimate"]
    # ES window 0.0100 (its in_window_price) + ES 0.0615 + GB window 0.0600 ("*" has no in_window_price: its price)
    # + MX BSUID 0.0305 + ES BSUID window 0.0100; the suppressed ES number and the 3 US recipients cost nothing
    assert estimate["total"] == "0.172"
    assert estimate["suppressed"] == 1 and estimate["blocked"] == 3
    assert estimate["customer_service_window"] == 3 and estimate["unpriced"] == 0
    assert estimate["by_country"] == {
        "ES": {"recipients": 3, "unit_price": "0.0615", "total": "0.0815"},
        "GB": {"recipients": 1, "unit_price": "0.06", "total": "0.06"},
        "MX": {"recipients": 1, "unit_price": "0.0305", "total": "0.0305"},
    }
    assert Broadcast.objects.count() == 0

    # And the broadcast created from the same body stores the same estimate
    created = post(api, body(channel))
    assert created.status_code == 202, created.content
    broadcast = Broadcast.objects.get(pk=created.json()["broadcast_id"])
    assert broadcast.cost_estimated == Decimal("0.172")
    assert api.get(f"{URL}/{broadcast.id}").json()["cost"]["estimated"] == "0.172"


def test_a_utility_dry_run_prices_windows_and_blocks_nothing(api, channel, template, rules_rows):
    pricing.rate_card_load(text=CARD)
    Template.objects.filter(pk=template.pk).update(category=Template.Category.UTILITY)

    estimate = orjson.loads(post(api, body(channel, dry_run=True)).content)["estimate"]

    # ES: 2 regular x 0.02 + 2 in a window at 0 (no in_window_price, UTILITY); GB window: "*" in_window 0.004;
    # US 2 numbers + US BSUID and the MX BSUID by "*": 4 x 0.01
    assert estimate["total"] == "0.084"
    assert estimate["suppressed"] == 0 and estimate["blocked"] == 0 and estimate["customer_service_window"] == 3
    assert estimate["by_country"]["US"] == {"recipients": 3, "unit_price": "0.01", "total": "0.03"}


def test_blocked_regions_follow_the_setting(api, channel, template, settings):
    pricing.rate_card_load(text=CARD)
    settings.MARKETING_BLOCKED_REGIONS = ["MX", "GB"]
    estimate = post(api, body(channel, dry_run=True)).json()["estimate"]
    assert estimate["blocked"] == 2 and set(estimate["by_country"]) == {"ES", "US"}
    settings.MARKETING_BLOCKED_REGIONS = []
    assert post(api, body(channel, dry_run=True)).json()["estimate"]["blocked"] == 0


# --- the region gate ----------------------------------------------------------------------------


def _ctx(category: str) -> GateContext:
    return GateContext(
        broadcast_id="b" * 24,
        organization_id=1,
        channel_id="c" * 24,
        template_category=category,
        now=datetime(2026, 11, 27, tzinfo=UTC),
    )


def test_the_region_gate_fails_marketing_to_blocked_regions_only(settings):
    settings.MARKETING_BLOCKED_REGIONS = ["US", "CA"]
    sends = [
        Claimed(id=i, index=i, to=to, variables={}, attempts=1)
        for i, to in enumerate(["+14155552671", "+16135550123", "+15417543010", "+34612345678", "CA.1", "ES.1"])
    ]
    # +1 613 is Canada, +1 541 the US, and a BSUID's prefix names its country
    verdict = region_gate(_ctx("MARKETING"), sends)
    failed = {send.to: result for send, result in verdict.failed}
    assert set(failed) == {"+14155552671", "+16135550123", "+15417543010", "CA.1"}
    assert [s.to for s in verdict.ready] == ["+34612345678", "ES.1"]
    error = failed["CA.1"].error
    assert error.code == "marketing_region_blocked" and error.retryable is False
    for category in ("UTILITY", "AUTHENTICATION"):
        assert region_gate(_ctx(category), sends).ready == sends


# --- billing a delivered BSUID send --------------------------------------------------------------


def test_a_delivered_bsuid_send_is_billed_at_its_prefixs_country(org, channel, template):
    pricing.rate_card_load(text=CARD)
    broadcast = broadcast_with_sends(org=org, channel=channel, template=template, count=1)
    send = Send.objects.get(broadcast=broadcast)
    Send.objects.filter(pk=send.pk).update(to=MX_BSUID, user_id=MX_BSUID)
    regular = {"billable": True, "pricing_model": "PMP", "category": "marketing", "type": "regular"}
    entry = {
        "id": send.message_id,
        "status": "delivered",
        "timestamp": "1764252000",
        "recipient_id": "",
        "pricing": regular,
    }

    sends_apply_statuses(statuses=[status_update_parse(entry, phone_number_id=channel.phone_number_id)])

    send.refresh_from_db()
    assert send.price == Decimal("0.0305") and send.billed_at is not None
