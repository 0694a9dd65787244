"""Money (docs/operations.md and docs/rules.md): the rate card, the price of a send, estimates, and the bill of
delivered sends.

- A rate card is Meta's price per delivered message by (country, category), one currency per card
  (``load_rate_card``). The newest card is in force; cards are never edited (a new load makes a new card), so what
  a card id prices never changes, and the prices of a card are cached per card id in this process (the id itself
  is always read from the database: many processes, one truth).
- A send's country is libphonenumber's region of its E.164 number, or a BSUID's prefix (phones.address_region); a
  card's ``*`` row prices every country the card does not name.
- Estimates price each recipient at the template's category: suppressed numbers and, for MARKETING, recipients of
  MARKETING_BLOCKED_REGIONS cost nothing (counted apart); recipients whose customer-service window is open cost the
  row's ``in_window_price`` (a row without one: 0 for UTILITY, its price otherwise).
- Billing (``sends_bill`` rows, applied by broadcasts/status_updates/): a send that Meta reports billable
  (``pricing.type == "regular"`` or ``pricing.billable is true``) is billed once, when a status finds it DELIVERED or
  READ, at the card in force then, for its country and Meta's ``pricing.category``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from broadcasts.models import Broadcast, RateCard, RateCardPrice
from broadcasts.phones import address_region
from broadcasts.rate_card_csv import ANY_COUNTRY, CATEGORIES, rate_card_parse
from templates_registry.models import Template

Category = Template.Category
# Meta's pricing categories (its own lowercase words, docs/rules.md) as our template categories: the three by name, and
# the ones beyond them. Any other (``service``, ``referral_conversion``) we do not price.
_META_CATEGORY: dict[str, str] = {
    **{category.lower(): category for category in CATEGORIES},
    "marketing_lite": Category.MARKETING.value,
    "authentication_international": Category.AUTHENTICATION.value,
}

Prices = Mapping[tuple[str, str], Decimal]


# --- the card ------------------------------------------------------------------------------------


def rate_card_load(*, text: str) -> RateCard:
    """Parse and store a new card, which is in force from its commit; all or nothing. Older cards are kept."""
    currency, rows = rate_card_parse(text)
    with transaction.atomic():
        card = RateCard.objects.create(currency=currency, loaded_at=timezone.now())
        RateCardPrice.objects.bulk_create(
            [RateCardPrice(card=card, country=c, category=cat, price=p, in_window_price=w) for c, cat, p, w in rows],
            batch_size=1000,
        )
    return card


def rate_card_current() -> RateCard | None:
    """The card in force: the newest (one probe of its index)."""
    return RateCard.objects.order_by("-loaded_at", "-id").first()


# Card id -> its prices. A card never changes once committed, so this can only be incomplete, never wrong; a
# handful of cards per process at most (a load makes a new id, the old ones stop being asked for).
_PRICES: dict[int, tuple[dict[tuple[str, str], Decimal], dict[tuple[str, str], Decimal]]] = {}
_PRICES_KEEP = 16


def _card_tables(card_id: int) -> tuple[dict[tuple[str, str], Decimal], dict[tuple[str, str], Decimal]]:
    """(prices, in-window prices of the rows that have one) of a card, cached per card id."""
    tables = _PRICES.get(card_id)
    if tables is None:
        tables = ({}, {})
        rows = RateCardPrice.objects.filter(card_id=card_id).values_list(
            "country", "category", "price", "in_window_price"
        )
        for country, category, price, in_window in rows:
            tables[0][(country, category)] = price
            if in_window is not None:
                tables[1][(country, category)] = in_window
        if len(_PRICES) >= _PRICES_KEEP:
            _PRICES.pop(next(iter(_PRICES)))
        _PRICES[card_id] = tables
    return tables


def card_prices(card_id: int) -> Prices:
    """The prices of a card, ``{(country, category): price}`` (cached per card id)."""
    return _card_tables(card_id)[0]


def in_window_unit_price(card_id: int, *, country: str | None, category: str) -> Decimal | None:
    """The price inside an open customer-service window (docs/rules.md): the row's ``in_window_price``, or for a row
    without one 0 for UTILITY and the row's price otherwise; the row is the country's, else ``*``; None without."""
    prices, in_window = _card_tables(card_id)
    key = (country, category) if (country, category) in prices else (ANY_COUNTRY, category)
    if key not in prices:
        return None
    if key in in_window:
        return in_window[key]
    return Decimal(0) if category == Category.UTILITY else prices[key]


def unit_price(prices: Prices, *, country: str | None, category: str) -> Decimal | None:
    """The card's price for that country (its ``*`` row otherwise); None when the card prices neither."""
    if country is not None:
        price = prices.get((country, category))
        if price is not None:
            return price
    return prices.get((ANY_COUNTRY, category))


def money(value: Decimal | None) -> str | None:
    """A decimal string with at least 2 places and no trailing zeros beyond them: ``"187.50"``, ``"0.0625"``."""
    if value is None:
        return None
    text = format(value.normalize(), "f")
    whole, _, fraction = text.partition(".")
    return f"{whole}.{fraction.ljust(2, '0')}"


# --- estimates -----------------------------------------------------------------------------------


@dataclass(slots=True)
class CountryLine:
    recipients: int = 0
    unit_price: Decimal | None = None
    total: Decimal = Decimal(0)


@dataclass(slots=True)
class Estimate:
    """What a list of recipients costs at one card: the total, by country, and who is free or unpriced."""

    currency: str
    category: str
    total: Decimal = Decimal(0)
    by_country: dict[str, CountryLine] = field(default_factory=dict)
    suppressed: int = 0  # MARKETING only: suppressed numbers, never sent, cost nothing
    blocked: int = 0  # MARKETING only: recipients of MARKETING_BLOCKED_REGIONS, never sent, cost nothing
    frequency_capped: int = 0  # MARKETING only: recipients the organization's frequency cap would stop, cost nothing
    free_window: int = 0  # recipients whose customer-service window is open, at the in-window price
    unpriced: int = 0  # recipients the card prices neither by country nor by "*" (counted at 0)

    def as_json(self) -> dict[str, Any]:
        return {
            "currency": self.currency,
            "total": money(self.total),
            "category": self.category,
            "by_country": {
                country: {
                    "recipients": line.recipients,
                    "unit_price": money(line.unit_price),
                    "total": money(line.total),
                }
                for country, line in sorted(self.by_country.items())
            },
            "suppressed": self.suppressed,
            "blocked": self.blocked,
            "frequency_capped": self.frequency_capped,
            "customer_service_window": self.free_window,
            "unpriced": self.unpriced,
        }


# Countries of numbers whose region libphonenumber cannot name (non-geographic "+800..." numbers).
UNKNOWN_COUNTRY = "ZZ"


def estimate(
    *,
    card: RateCard,
    category: str,
    numbers: Sequence[str],
    regions: Sequence[str | None] | None = None,
    suppressed: set[str] = frozenset(),
    windows_open: set[str] = frozenset(),
    blocked_regions: frozenset[str] = frozenset(),
) -> Estimate:
    """Price every recipient (one listed twice is sent, and billed, twice). ``suppressed`` are left out for MARKETING
    only, and so are recipients of ``blocked_regions`` (MARKETING_BLOCKED_REGIONS); ``windows_open`` cost the
    in-window price (``in_window_unit_price``) (docs/rules.md).

    ``numbers`` are sends' addresses (E.164 or BSUID); ``regions[i]`` is ``address_region(numbers[i])`` when the
    caller already knows it (the bulk request's check found it); otherwise each is parsed here. Counted per country
    in one pass, then priced once per country: ``unit_price * count`` is the exact sum of that many prices (Decimal,
    no rounding at these sizes)."""
    prices = card_prices(card.id)
    result = Estimate(currency=card.currency, category=category)
    marketing = category == Category.MARKETING
    skip = suppressed if marketing else frozenset()
    blocked = blocked_regions if marketing else frozenset()
    if regions is None:
        regions = [address_region(n) for n in numbers]
    if len(regions) != len(numbers):
        raise ValueError("regions and numbers differ in length")
    in_window_by_country: Counter[str | None] = Counter()
    if skip or windows_open:
        counts: Counter[str | None] = Counter()
        for number, region in zip(numbers, regions, strict=True):
            if number in skip:
                result.suppressed += 1
                continue
            counts[region] += 1
            if number in windows_open:
                in_window_by_country[region] += 1
    else:
        counts = Counter(regions)
    for region in [r for r in counts if r in blocked]:
        result.blocked += counts.pop(region)
        in_window_by_country.pop(region, None)
    result.free_window = sum(in_window_by_country.values())
    lines = result.by_country
    for region, recipients in counts.items():
        country = region or UNKNOWN_COUNTRY
        price = unit_price(prices, country=country, category=category)
        in_window = in_window_by_country[region]
        regular = recipients - in_window
        line = lines.get(country)  # None and a region named UNKNOWN_COUNTRY would share a line
        if line is None:
            line = lines[country] = CountryLine(unit_price=price)
        line.recipients += recipients
        if price is None:
            # No row at all: unpriced, except an open window of a UTILITY template (free whatever the card).
            result.unpriced += regular + (in_window if category != Category.UTILITY else 0)
            continue
        if regular:
            line.total += price * regular
        if in_window:
            line.total += in_window_unit_price(card.id, country=country, category=category) * in_window
    result.total = sum((line.total for line in lines.values()), Decimal(0))
    return result


def send_prices(*, card_id: int, category: str, numbers: Iterable[str]) -> list[Decimal | None]:
    """The estimated price of each send's address at that card (the budget gate's reservations)."""
    prices = card_prices(card_id)
    return [unit_price(prices, country=address_region(n), category=category) for n in numbers]


# --- billing -------------------------------------------------------------------------------------


def pricing_billable(pricing: Mapping[str, Any] | None) -> bool:
    """Meta bills this message: ``type: "regular"`` or ``billable: true`` (docs/rules.md)."""
    if not isinstance(pricing, Mapping):
        return False
    return pricing.get("type") == "regular" or pricing.get("billable") is True


def pricing_category(pricing: Mapping[str, Any] | None) -> str | None:
    """Our category for Meta's ``pricing.category`` (``marketing_lite`` is MARKETING, ``authentication_international``
    AUTHENTICATION, names in any case); None for one we do not price (``service``, ``referral_conversion``)."""
    raw = pricing.get("category") if isinstance(pricing, Mapping) else None
    if not isinstance(raw, str):
        return None
    return _META_CATEGORY.get(raw.lower())


# --- the spending cap ----------------------------------------------------------------------------

BUDGET_EXCEEDED = "budget_exceeded"


def budget_exhausted(*, broadcast: Broadcast) -> bool:
    """The broadcast was paused by its max_cost (resume is then refused, docs/rules.md)."""
    reason = broadcast.paused_reason
    return isinstance(reason, dict) and reason.get("code") == BUDGET_EXCEEDED


@dataclass(frozen=True, slots=True)
class Reservation:
    """The budget gate's verdict on a batch (ids in batch order)."""

    admitted: list[int]  # reserved now, or earlier (a send admitted again reserves nothing more)
    refused: list[int]  # the first send that would pass max_cost, and every fresh send after it
    posted_cost: Decimal  # the broadcast's reserved total after this batch


# One statement per batch, the broadcast row locked first (the lock order of broadcasts/counts.py: it is the only
# row the sends' UPDATE waits behind it for). Fresh sends (no reservation yet) reserve their estimated price in
# batch order while posted_cost plus the running sum stays within max_cost; prices are >= 0, so what fits is a
# prefix. Sends reserved by an earlier batch pass again without counting twice.
_RESERVE_SQL = """
    WITH b AS (
        SELECT id, posted_cost, max_cost FROM broadcasts_broadcast WHERE id = %(broadcast)s FOR NO KEY UPDATE
    ),
    v AS (
        SELECT * FROM unnest(%(ids)s::bigint[], %(prices)s::numeric[]) WITH ORDINALITY AS v(id, price, ord)
    ),
    fresh AS (
        SELECT v.id, v.price, v.ord FROM v JOIN broadcasts_send s ON s.id = v.id WHERE s.price_reserved IS NULL
    ),
    run AS (SELECT id, price, ord, sum(price) OVER (ORDER BY ord) AS cum FROM fresh),
    fits AS (SELECT run.id, run.price FROM run, b WHERE b.posted_cost + run.cum <= b.max_cost),
    marked AS (
        UPDATE broadcasts_send s SET price_reserved = fits.price FROM fits
        WHERE s.id = fits.id AND s.price_reserved IS NULL
        RETURNING s.id, s.price_reserved
    ),
    added AS (
        UPDATE broadcasts_broadcast x SET posted_cost = x.posted_cost + (SELECT COALESCE(sum(price_reserved), 0)
                                                                         FROM marked)
        FROM b WHERE x.id = b.id
        RETURNING x.posted_cost
    )
    SELECT
        (SELECT COALESCE(array_agg(id ORDER BY ord), '{}') FROM run WHERE id NOT IN (SELECT id FROM marked)),
        (SELECT posted_cost FROM added)
"""


def budget_reserve(*, broadcast_id: str, card_id: int, category: str, sends: list[tuple[int, str]]) -> Reservation:
    """Reserve the estimated price (at the broadcast's card) of the sends of a batch about to be posted, within
    the broadcast's max_cost (docs/rules.md): one statement, idempotent per send (Send.price_reserved)."""
    ids = [send_id for send_id, _ in sends]
    prices = [
        p if p is not None else Decimal(0)
        for p in send_prices(card_id=card_id, category=category, numbers=(to for _, to in sends))
    ]
    with connection.cursor() as cursor:
        cursor.execute(_RESERVE_SQL, {"broadcast": broadcast_id, "ids": ids, "prices": prices})
        refused_ids, posted_cost = cursor.fetchone()
    refused = set(refused_ids or ())
    return Reservation(
        admitted=[i for i in ids if i not in refused],
        refused=[i for i in ids if i in refused],
        posted_cost=posted_cost if posted_cost is not None else Decimal(0),
    )
