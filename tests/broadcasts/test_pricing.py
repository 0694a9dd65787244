"""Money (docs/operations.md and docs/rules.md): the rate card loader, the dry-run arithmetic with fake rule
callables, the budget
reservation, and the bill of Meta's pricing statuses (broadcasts/pricing.py, previews.py, status_updates/)."""

import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from broadcasts import previews, pricing
from broadcasts.models import Broadcast, IdempotencyRecord, RateCard, RateCardPrice, Send, SendStatus
from broadcasts.status_updates.apply import sends_apply_statuses
from tests.events.helpers import broadcast_with_sends
from whatsapp.inbound.statuses import status_update_parse

ROOT = Path(__file__).resolve().parents[2]

CARD = """country,category,price,currency
ES,MARKETING,0.0615,USD
MX,MARKETING,0.0305,USD
US,MARKETING,0.0250,USD
IN,MARKETING,0.0107,USD
*,MARKETING,0.0600,USD
ES,UTILITY,0.0200,USD
*,UTILITY,0.0100,USD
*,AUTHENTICATION,0.0300,USD
"""

# 3 ES, 2 MX, 1 US, 4 IN, 2 GB (priced by "*").
MIXED = [
    "+34612345678",
    "+34612345679",
    "+34699000111",
    "+525512345678",
    "+525512345679",
    "+14155552671",
    "+919876543210",
    "+919876543211",
    "+919812345678",
    "+919898989898",
    "+447400123456",
    "+447400123457",
]


@pytest.fixture(autouse=True)
def _no_blocked_region(settings):
    """These tests price the card's US row for MARKETING; MARKETING_BLOCKED_REGIONS (US by default) has its own
    tests in test_pricing_in_window_and_regions.py."""
    settings.MARKETING_BLOCKED_REGIONS = []


def card_load(text: str = CARD) -> RateCard:
    return pricing.rate_card_load(text=text)


def body(channel, numbers, **extra) -> dict:
    return {
        "template_name": "welcome_v2",
        "language": "es",
        "channel_id": channel.id,
        "recipients": [{"to": n, "variables": {"nombre": "Ana", "monto": "1"}} for n in numbers],
        "dry_run": True,
        **extra,
    }


def rows() -> tuple[int, ...]:
    return (
        Broadcast.objects.count(),
        Send.objects.count(),
        IdempotencyRecord.objects.count(),
        RateCard.objects.count(),
    )


# --- load_rate_card ----------------------------------------------------------------------------


def _manage(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
    )


@pytest.mark.django_db(transaction=True)
def test_load_rate_card_command_good_then_bad_file(tmp_path, settings):
    from django.db import connection

    db = connection.settings_dict
    env_url = f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
    good = tmp_path / "rates.csv"
    good.write_text(CARD)
    bad = tmp_path / "bad.csv"
    bad.write_text(CARD + "FR,MARKETING,abc,USD\n")
    import os

    env = {**os.environ, "DATABASE_URL": env_url}

    def load(path):
        return subprocess.run(
            [sys.executable, "manage.py", "load_rate_card", "--file", str(path)],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    # When a good file is loaded: exit 0, the row count last
    done = load(good)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "8"
    first = RateCard.objects.get()
    assert first.currency == "USD" and first.prices.count() == 8

    # When a bad one is: non-zero, the line named, nothing loaded (the first card still in force)
    failed = load(bad)
    assert failed.returncode != 0
    assert "line 10" in failed.stderr and "nothing was loaded" in failed.stderr
    assert RateCard.objects.count() == 1 and RateCardPrice.objects.count() == 8
    assert pricing.rate_card_current() == first


@pytest.mark.parametrize(
    ("extra", "line", "words"),
    [
        ("XX,MARKETING,0.1,USD\n", 11, "ISO 3166"),
        ("FR,PROMO,0.1,USD\n", 11, "category"),
        ("FR,MARKETING,-0.1,USD\n", 11, "price"),
        ("FR,MARKETING,0.1234567,USD\n", 11, "price"),
        ("FR,MARKETING,0.1,EUR\n", 11, "one per card"),
        ("FR,MARKETING,0.1,US\n", 11, "ISO 4217"),
        ("ES,MARKETING,0.1,USD\n", 11, "already priced on line 2"),
        ("FR,MARKETING,0.1\n", 11, "columns"),
    ],
)
def test_a_malformed_row_names_its_line_and_loads_nothing(db, tmp_path, extra, line, words):
    path = tmp_path / "rates.csv"
    path.write_text(CARD + "\n" + extra)  # a blank line 10 is skipped, still counted
    with pytest.raises(CommandError) as raised:
        call_command("load_rate_card", "--file", str(path))
    assert f"line {line}" in str(raised.value) and words in str(raised.value)
    assert RateCard.objects.count() == 0 and RateCardPrice.objects.count() == 0


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("", "line 1"),
        ("country,category,price\nES,MARKETING,1,USD\n", "header"),
        ("country,category,price,currency\n", "no price rows"),
    ],
)
def test_an_empty_or_headless_file_is_refused(db, tmp_path, text, words):
    path = tmp_path / "rates.csv"
    path.write_text(text)
    with pytest.raises(CommandError, match=words):
        call_command("load_rate_card", "--file", str(path))
    assert RateCard.objects.count() == 0


def test_a_new_card_replaces_the_old_one_which_is_kept(db):
    old = card_load()
    new = card_load(CARD.replace("0.0615", "0.0700"))
    assert pricing.rate_card_current() == new
    assert RateCard.objects.count() == 2
    assert pricing.card_prices(old.id)[("ES", "MARKETING")] == Decimal("0.0615")
    assert pricing.card_prices(new.id)[("ES", "MARKETING")] == Decimal("0.0700")


# --- the dry run's arithmetic ------------------------------------------------------------------


def test_dry_run_matches_the_hand_computed_estimate_and_stores_nothing(org, channel, template):
    card_load()
    before = rows()
    preview = previews.broadcast_preview(organization=org, body=body(channel, MIXED))
    assert rows() == before
    estimate = preview["estimate"]
    # 3 x 0.0615 + 2 x 0.0305 + 0.0250 + 4 x 0.0107 + 2 x 0.0600 (GB by "*") = 0.4333
    assert estimate["total"] == "0.4333"
    assert estimate["currency"] == "USD" and estimate["category"] == "MARKETING"
    assert estimate["by_country"] == {
        "ES": {"recipients": 3, "unit_price": "0.0615", "total": "0.1845"},
        "GB": {"recipients": 2, "unit_price": "0.06", "total": "0.12"},
        "IN": {"recipients": 4, "unit_price": "0.0107", "total": "0.0428"},
        "MX": {"recipients": 2, "unit_price": "0.0305", "total": "0.061"},
        "US": {"recipients": 1, "unit_price": "0.025", "total": "0.025"},
    }
    assert estimate["suppressed"] == 0
    assert preview["total_recipients"] == 12 and preview["dry_run"] is True


def test_suppressed_numbers_are_free_and_counted_apart_for_marketing_only(org, channel, template):
    card_load()
    asked = []

    def suppressed_among(*, organization_id, numbers):
        asked.append(organization_id)
        return {"+34612345678", "+919876543210"}

    marketing = previews.broadcast_preview(
        organization=org, body=body(channel, MIXED), suppressed_among=suppressed_among
    )
    assert marketing["estimate"]["suppressed"] == 2
    # 0.4333 - 0.0615 - 0.0107
    assert marketing["estimate"]["total"] == "0.3611"
    assert marketing["estimate"]["by_country"]["ES"]["recipients"] == 2

    # A UTILITY template: suppression does not apply (and is not even asked)
    template.category = "UTILITY"
    template.save()
    asked.clear()
    utility = previews.broadcast_preview(organization=org, body=body(channel, MIXED), suppressed_among=suppressed_among)
    assert asked == []
    assert utility["estimate"]["suppressed"] == 0
    # 3 x 0.0200 + 9 x 0.0100
    assert utility["estimate"]["total"] == "0.15"


def test_open_customer_service_windows_without_an_in_window_price_cost_nothing_for_utility_only(org, channel, template):
    card_load()

    def windows(*, channel_id, numbers, now):
        return {"+34612345678", "+14155552671"}

    marketing = previews.broadcast_preview(organization=org, body=body(channel, MIXED), customer_windows_open=windows)
    # No in_window_price on the card: a MARKETING row's own price
    assert marketing["estimate"]["total"] == "0.4333"
    assert marketing["estimate"]["customer_service_window"] == 2

    template.category = "UTILITY"
    template.save()
    utility = previews.broadcast_preview(organization=org, body=body(channel, MIXED), customer_windows_open=windows)
    # 0.15 - 0.0200 (ES) - 0.0100 (US by "*")
    assert utility["estimate"]["total"] == "0.12"
    assert utility["estimate"]["customer_service_window"] == 2
    assert utility["estimate"]["by_country"]["ES"] == {"recipients": 3, "unit_price": "0.02", "total": "0.04"}


def test_eta_follows_the_cap_and_the_limit_outlook(org, channel, template):
    from datetime import UTC, datetime, timedelta

    channel.max_mps = 4
    channel.save()
    now = datetime(2026, 11, 27, 14, 0, tzinfo=UTC)
    plain = previews.broadcast_preview(organization=org, body=body(channel, MIXED), now=now)
    assert plain["estimate"] is None  # no card
    assert plain["eta"] == "2026-11-27T14:00:03Z"  # 12 sends at 4/s
    assert plain["messaging_limit"] == {"limit": None, "used": None, "would_wait": 0}

    frees_at = now + timedelta(hours=2)

    def outlook(*, organization_id, channel_id, numbers, now):
        return {"limit": 250, "used": 246, "would_wait": 8, "frees_at": frees_at}

    waiting = previews.broadcast_preview(organization=org, body=body(channel, MIXED), now=now, limit_outlook=outlook)
    assert waiting["messaging_limit"] == {"limit": 250, "used": 246, "would_wait": 8}
    assert waiting["eta"] == "2026-11-27T16:00:02Z"  # the 8 waiting leave at 4/s once the window frees room


def test_missing_variables_cost_nothing(org, channel, template):
    card_load()
    data = body(channel, MIXED[:2])
    data["recipients"][1]["variables"] = {"nombre": "Ana"}
    preview = previews.broadcast_preview(organization=org, body=data)
    assert preview["missing_variables"] == 1
    assert preview["estimate"]["total"] == "0.0615"


# --- the estimate from the regions the phone check found -------------------------------------------

# MIXED, a number listed twice, a UK number written with its trunk 0, and a non-geographic +800 number
# (no region: priced by "*").
MIXED_MORE = [*MIXED, "+34612345678", "+4402079460958", "+80012345678"]


@pytest.mark.parametrize("category", ["MARKETING", "UTILITY", "AUTHENTICATION"])
def test_the_estimate_from_known_regions_equals_parsing_each_number(db, category):
    from broadcasts.phones import phone_e164_region

    card = card_load()
    checked = [phone_e164_region(n) for n in MIXED_MORE]
    numbers, regions = [c[0] for c in checked], [c[1] for c in checked]
    assert regions[-1] is None and regions[-2] == "GB"
    for suppressed, windows in [(set(), set()), ({"+34612345678", "+80012345678"}, {"+14155552671", "+34699000111"})]:
        kwargs = {"card": card, "category": category, "numbers": numbers, "suppressed": suppressed}
        parsed = pricing.estimate(**kwargs, windows_open=windows)
        known = pricing.estimate(**kwargs, windows_open=windows, regions=regions)
        assert known.as_json() == parsed.as_json()
        assert str(known.total) == str(parsed.total)  # the same Decimal, exponent included
    assert parsed.suppressed == (3 if category == "MARKETING" else 0)
    assert parsed.free_window == 2


def test_creation_time_cost_equals_the_dry_run_for_a_mixed_region_list(org, channel, template):
    from broadcasts import services

    card_load()
    data = body(channel, MIXED_MORE)
    data["recipients"][1]["variables"] = {"nombre": "Ana"}  # missing monto: stored FAILED, costs nothing
    preview = previews.broadcast_preview(organization=org, body=data)
    # 0.4333 - 0.0615 (the FAILED ES) + 0.0615 (ES twice) + 0.06 (GB) + 0.06 (+800 by "*")
    assert preview["estimate"]["total"] == "0.5533"
    assert preview["estimate"]["by_country"]["ZZ"] == {"recipients": 1, "unit_price": "0.06", "total": "0.06"}
    data.pop("dry_run")
    created = services.broadcast_create(organization=org, body=data)
    broadcast = Broadcast.objects.get(pk=created.body["broadcast_id"])
    assert broadcast.cost_estimated == Decimal(preview["estimate"]["total"])
    assert pricing.money(broadcast.cost_estimated) == preview["estimate"]["total"]
    assert broadcast.cost_currency == "USD" and broadcast.failed == 1


# --- the budget reservation --------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_budget_reserves_a_prefix_once_per_send(org, channel, template):
    card = card_load()
    broadcast = broadcast_with_sends(org=org, channel=channel, template=template, count=5, status=SendStatus.PENDING)
    Broadcast.objects.filter(id=broadcast.id).update(max_cost=Decimal("0.25"), rate_card=card)
    sends = list(Send.objects.filter(broadcast=broadcast).order_by("id").values_list("id", "to"))
    price = pricing.send_prices(card_id=card.id, category="MARKETING", numbers=[sends[0][1]])[0]
    fits = int(Decimal("0.25") // price)
    assert 0 < fits < 5

    first = pricing.budget_reserve(broadcast_id=broadcast.id, card_id=card.id, category="MARKETING", sends=sends[:2])
    assert first.admitted == [s for s, _ in sends[:2]] and first.refused == []
    # The same sends again (not granted a slot the first time) plus the rest: reserved once only
    again = pricing.budget_reserve(broadcast_id=broadcast.id, card_id=card.id, category="MARKETING", sends=sends)
    assert again.admitted == [s for s, _ in sends[:fits]]
    assert again.refused == [s for s, _ in sends[fits:]]
    broadcast.refresh_from_db()
    assert broadcast.posted_cost == price * fits
    assert Send.objects.filter(broadcast=broadcast, price_reserved__isnull=False).count() == fits


# --- billing -----------------------------------------------------------------------------------


# The conftest channel's number: a status naming another channel changes nothing (docs/rules.md).
CHANNEL_PHONE_NUMBER_ID = "100000000000001"


def _status(wamid: str, status: str, pricing_obj=None):
    entry = {"id": wamid, "status": status, "timestamp": "1764252000", "recipient_id": "34612345678"}
    if pricing_obj is not None:
        entry["pricing"] = pricing_obj
    return status_update_parse(entry, phone_number_id=CHANNEL_PHONE_NUMBER_ID)


REGULAR = {"billable": True, "pricing_model": "PMP", "category": "marketing", "type": "regular"}


def test_a_send_is_billed_once_at_the_card_of_its_delivery(org, channel, template):
    card_load()
    broadcast = broadcast_with_sends(org=org, channel=channel, template=template, count=2)
    Send.objects.filter(broadcast=broadcast).update(to="+34612345678")
    w0, w1 = (s.message_id for s in Send.objects.filter(broadcast=broadcast).order_by("index"))

    # sent (pricing stored, not billed yet), delivered, read, and delivered again: billed once
    sends_apply_statuses(statuses=[_status(w0, "sent", REGULAR)])
    s0 = Send.objects.get(message_id=w0)
    assert s0.pricing == REGULAR and s0.billed_at is None
    sends_apply_statuses(statuses=[_status(w0, "delivered", REGULAR)])
    sends_apply_statuses(statuses=[_status(w0, "read", REGULAR), _status(w0, "delivered", REGULAR)])
    sends_apply_statuses(statuses=[_status(w0, "read", REGULAR)])
    s0.refresh_from_db()
    assert s0.price == Decimal("0.0615") and s0.billed_at is not None
    broadcast.refresh_from_db()
    assert broadcast.billed == Decimal("0.0615")

    # A later card does not change a stored price; it prices the next delivery
    card_load(CARD.replace("0.0615", "0.0900"))
    sends_apply_statuses(statuses=[_status(w0, "read", REGULAR), _status(w1, "delivered", REGULAR)])
    s0.refresh_from_db()
    assert s0.price == Decimal("0.0615")
    broadcast.refresh_from_db()
    assert broadcast.billed == Decimal("0.1515")


def test_non_billable_and_renamed_categories(org, channel, template):
    card_load()
    broadcast = broadcast_with_sends(org=org, channel=channel, template=template, count=3)
    Send.objects.filter(broadcast=broadcast).update(to="+34612345678")
    w = [s.message_id for s in Send.objects.filter(broadcast=broadcast).order_by("index")]
    free = {"billable": False, "pricing_model": "PMP", "category": "utility", "type": "free_customer_service"}
    lite = {"pricing_model": "PMP", "category": "marketing_lite", "type": "regular"}
    auth = {"billable": True, "pricing_model": "PMP", "category": "authentication_international"}
    sends_apply_statuses(
        statuses=[_status(w[0], "delivered", free), _status(w[1], "delivered", lite), _status(w[2], "read", auth)]
    )
    got = {s.message_id: s for s in Send.objects.filter(broadcast=broadcast)}
    assert got[w[0]].price is None and got[w[0]].billed_at is None and got[w[0]].pricing == free
    assert got[w[1]].price == Decimal("0.0615")  # marketing_lite counts as MARKETING
    assert got[w[2]].price == Decimal("0.03")  # authentication_international as AUTHENTICATION, by "*"
    broadcast.refresh_from_db()
    assert broadcast.billed == Decimal("0.0915")


def test_a_failed_send_is_not_billed(org, channel, template):
    card_load()
    broadcast = broadcast_with_sends(org=org, channel=channel, template=template, count=1)
    wamid = Send.objects.get(broadcast=broadcast).message_id
    entry = {
        "id": wamid,
        "status": "failed",
        "timestamp": "1764252000",
        "pricing": REGULAR,
        "errors": [{"code": 131026, "title": "Undeliverable"}],
    }
    sends_apply_statuses(statuses=[status_update_parse(entry, phone_number_id=CHANNEL_PHONE_NUMBER_ID)])
    send = Send.objects.get(broadcast=broadcast)
    assert send.status == SendStatus.FAILED and send.billed_at is None and send.pricing == REGULAR
    broadcast.refresh_from_db()
    assert broadcast.billed == 0


def test_a_repeated_pricing_costs_no_write(org, channel, template, django_assert_max_num_queries):
    card_load()
    broadcast = broadcast_with_sends(org=org, channel=channel, template=template, count=3)
    wamids = list(Send.objects.filter(broadcast=broadcast).values_list("message_id", flat=True))
    sends_apply_statuses(statuses=[_status(w, "read", REGULAR) for w in wamids])
    before = list(Send.objects.filter(broadcast=broadcast).order_by("id").values_list("updated_at", "billed_at"))
    # A redelivery of the same body: one read, nothing written
    with django_assert_max_num_queries(1):
        sends_apply_statuses(statuses=[_status(w, "read", REGULAR) for w in wamids])
    assert (
        list(Send.objects.filter(broadcast=broadcast).order_by("id").values_list("updated_at", "billed_at")) == before
    )


@pytest.mark.django_db(transaction=True)
def test_concurrent_bodies_bill_each_send_once(org, channel, template):
    import threading

    from django.db import close_old_connections

    card_load()
    broadcast = broadcast_with_sends(org=org, channel=channel, template=template, count=200)
    Send.objects.filter(broadcast=broadcast).update(to="+34612345678")
    wamids = list(Send.objects.filter(broadcast=broadcast).values_list("message_id", flat=True))
    errors = []

    def apply(status):
        try:
            for _ in range(3):
                sends_apply_statuses(statuses=[_status(w, status, REGULAR) for w in wamids], publish=False)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            close_old_connections()

    threads = [threading.Thread(target=apply, args=(s,)) for s in ("delivered", "read", "delivered", "read")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    broadcast.refresh_from_db()
    assert broadcast.billed == Decimal("0.0615") * 200
    assert Send.objects.filter(broadcast=broadcast, billed_at__isnull=False).count() == 200


def test_admin_shows_the_cost(admin_client, org, channel, template):
    from django.urls import reverse

    card = card_load()
    broadcast = broadcast_with_sends(org=org, channel=channel, template=template, count=1)
    Broadcast.objects.filter(id=broadcast.id).update(
        rate_card=card,
        cost_currency="USD",
        cost_estimated=Decimal("0.4333"),
        billed=Decimal("0.1230"),
        max_cost=Decimal("5"),
    )
    page = admin_client.get(reverse("admin:broadcasts_broadcast_change", args=[broadcast.pk])).content.decode()
    assert "0.123 billed of 0.4333 estimated USD, max 5.00" in page
    listing = admin_client.get(reverse("admin:broadcasts_broadcast_changelist")).content.decode()
    assert "0.4333 estimated USD" in listing
    cards = admin_client.get(reverse("admin:broadcasts_ratecard_change", args=[card.pk])).content.decode()
    assert "0.061500" in cards or "0.0615" in cards
