"""Money (docs/operations.md and docs/rules.md): the rate card, the price of a send, estimates, and the bill of
delivered sends.

- A rate card is Meta's price per delivered message by (country, category), one currency per card
  (``load_rate_card``). The newest card is in force; cards are never edited (a new load makes a new card), so what
  a card id prices never changes, and the prices of a card are cached per card id in this process (the id itself
  is always read from the database: many processes, one truth).
- A send's country is libphonenumber's region of its E.164 number; a card's ``*`` row prices every country the
  card does not name.
- Estimates price each recipient at the template's category: suppressed numbers cost nothing for MARKETING (they
  are counted apart), numbers whose customer-service window is open cost nothing for UTILITY.
- Billing (``sends_bill`` rows, applied by broadcasts/status_updates/): a send that Meta reports billable
  (``pricing.type == "regular"`` or ``pricing.billable is true``) is billed once, when a status finds it DELIVERED or
  READ, at the card in force then, for its country and Meta's ``pricing.category``.
"""

from __future__ import annotations

import csv
import io
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import phonenumbers
from django.db import connection, transaction
from django.utils import timezone

from broadcasts.models import Broadcast, RateCard, RateCardPrice
from broadcasts.phones import phone_region
from templates_registry.models import Template

Category = Template.Category
CATEGORIES = tuple(Category.values)
ANY_COUNTRY = "*"
CSV_COLUMNS = ("country", "category", "price", "currency")
# Prices: at most 6 decimals (the column's scale) and below a million per message.
MAX_PRICE = Decimal("1000000")
PRICE_PLACES = 6
_CURRENCY = re.compile(r"[A-Z]{3}")
_DECIMAL = re.compile(r"[0-9]{1,10}(\.[0-9]{1,6})?")
# Meta's pricing categories (its own lowercase words, docs/rules.md) as our template categories: the three by name, and
# the ones beyond them. Any other (``service``, ``referral_conversion``) we do not price.
_META_CATEGORY: dict[str, str] = {
    **{category.lower(): category for category in CATEGORIES},
    "marketing_lite": Category.MARKETING.value,
    "authentication_international": Category.AUTHENTICATION.value,
}

Prices = Mapping[tuple[str, str], Decimal]


class RateCardError(ValueError):
    """A rate card file that cannot be loaded; the message names the line."""


# --- the card ------------------------------------------------------------------------------------


def rate_card_parse(text: str) -> tuple[str, list[tuple[str, str, Decimal]]]:
    """(currency, [(country, category, price)]) of a CSV rate card; RateCardError naming the first bad line.

    Header ``country,category,price,currency`` (any order, any case); ``country`` an ISO 3166 alpha-2 code that
    libphonenumber knows, or ``*``; ``category`` MARKETING, UTILITY or AUTHENTICATION (any case); ``price`` a
    non-negative decimal with at most 6 places; ``currency`` ISO 4217, the same on every row; one row per
    (country, category)."""
    reader = csv.reader(io.StringIO(text))
    try:
        header = next(reader)
    except StopIteration:
        raise RateCardError("line 1: the file is empty; expected the header " + ",".join(CSV_COLUMNS)) from None
    except csv.Error as exc:
        raise RateCardError(f"line 1: {exc}") from None
    names = [h.strip().lower().lstrip("\ufeff") for h in header]
    if sorted(names) != sorted(CSV_COLUMNS):
        raise RateCardError(f"line 1: the header must be {','.join(CSV_COLUMNS)}; got {','.join(header)}")
    where = {name: names.index(name) for name in CSV_COLUMNS}
    currency: str | None = None
    rows: list[tuple[str, str, Decimal]] = []
    seen: dict[tuple[str, str], int] = {}
    try:
        for cells in reader:
            line = reader.line_num
            if not any(cell.strip() for cell in cells):
                continue  # blank line
            if len(cells) != len(CSV_COLUMNS):
                raise RateCardError(f"line {line}: expected {len(CSV_COLUMNS)} columns, got {len(cells)}")
            country = cells[where["country"]].strip().upper()
            category = cells[where["category"]].strip().upper()
            raw_price = cells[where["price"]].strip()
            row_currency = cells[where["currency"]].strip().upper()
            if country != ANY_COUNTRY and country not in phonenumbers.SUPPORTED_REGIONS:
                raise RateCardError(f"line {line}: country {country!r} is not an ISO 3166 alpha-2 code nor '*'")
            if category not in CATEGORIES:
                raise RateCardError(f"line {line}: category {category!r} is not one of {', '.join(CATEGORIES)}")
            if not _DECIMAL.fullmatch(raw_price):
                raise RateCardError(f"line {line}: price {raw_price!r} is not a decimal like 0.0625 (at most 6 places)")
            price = Decimal(raw_price)
            if price >= MAX_PRICE:
                raise RateCardError(f"line {line}: price {raw_price} is too large")
            if not _CURRENCY.fullmatch(row_currency):
                raise RateCardError(f"line {line}: currency {row_currency!r} is not an ISO 4217 code like USD")
            if currency is None:
                currency = row_currency
            elif row_currency != currency:
                raise RateCardError(f"line {line}: currency {row_currency} differs from {currency}; one per card")
            if (country, category) in seen:
                raise RateCardError(
                    f"line {line}: {country} {category} is already priced on line {seen[(country, category)]}"
                )
            seen[(country, category)] = line
            rows.append((country, category, price))
    except csv.Error as exc:
        raise RateCardError(f"line {reader.line_num}: {exc}") from None
    if currency is None:
        raise RateCardError("line 2: no price rows after the header")
    return currency, rows


def rate_card_load(*, text: str) -> RateCard:
    """Parse and store a new card, which is in force from its commit; all or nothing. Older cards are kept."""
    currency, rows = rate_card_parse(text)
    with transaction.atomic():
        card = RateCard.objects.create(currency=currency, loaded_at=timezone.now())
        RateCardPrice.objects.bulk_create(
            [RateCardPrice(card=card, country=c, category=cat, price=p) for c, cat, p in rows], batch_size=1000
        )
    return card


def rate_card_current() -> RateCard | None:
    """The card in force: the newest (one probe of its index)."""
    return RateCard.objects.order_by("-loaded_at", "-id").first()


# Card id -> its prices. A card never changes once committed, so this can only be incomplete, never wrong; a
# handful of cards per process at most (a load makes a new id, the old ones stop being asked for).
_PRICES: dict[int, dict[tuple[str, str], Decimal]] = {}
_PRICES_KEEP = 16


def card_prices(card_id: int) -> Prices:
    """The prices of a card, ``{(country, category): price}`` (cached per card id)."""
    prices = _PRICES.get(card_id)
    if prices is None:
        prices = {
            (country, category): price
            for country, category, price in RateCardPrice.objects.filter(card_id=card_id).values_list(
                "country", "category", "price"
            )
        }
        if len(_PRICES) >= _PRICES_KEEP:
            _PRICES.pop(next(iter(_PRICES)))
        _PRICES[card_id] = prices
    return prices


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
    free_window: int = 0  # UTILITY only: numbers whose customer-service window is open, cost 0
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
) -> Estimate:
    """Price every number (a number listed twice is sent, and billed, twice). ``suppressed`` are left out for
    MARKETING only; ``windows_open`` cost 0 for UTILITY only (docs/rules.md).

    ``regions[i]`` is ``phone_region(numbers[i])`` when the caller already knows it (the bulk request's phone check
    found it); otherwise each number is parsed here. Counted per country in one pass, then priced once per
    country: ``unit_price * count`` is the exact sum of that many prices (Decimal, no rounding at these sizes)."""
    prices = card_prices(card.id)
    result = Estimate(currency=card.currency, category=category)
    skip = suppressed if category == Category.MARKETING else frozenset()
    free = windows_open if category == Category.UTILITY else frozenset()
    if regions is None:
        regions = [phone_region(n) for n in numbers]
    free_by_country: Counter[str | None] = Counter()
    if skip or free:
        counts: Counter[str | None] = Counter()
        for number, region in zip(numbers, regions, strict=True):
            if number in skip:
                result.suppressed += 1
                continue
            counts[region] += 1
            if number in free:
                free_by_country[region] += 1
        result.free_window = sum(free_by_country.values())
    else:
        if len(regions) != len(numbers):
            raise ValueError("regions and numbers differ in length")
        counts = Counter(regions)
    lines = result.by_country
    for region, recipients in counts.items():
        country = region or UNKNOWN_COUNTRY
        price = unit_price(prices, country=country, category=category)
        billed = recipients - free_by_country[region]
        line = lines.get(country)  # None and a region named UNKNOWN_COUNTRY would share a line
        if line is None:
            line = lines[country] = CountryLine(unit_price=price)
        line.recipients += recipients
        if price is None:
            result.unpriced += billed
        elif billed:
            line.total += price * billed
    result.total = sum((line.total for line in lines.values()), Decimal(0))
    return result


def send_prices(*, card_id: int, category: str, numbers: Iterable[str]) -> list[Decimal | None]:
    """The estimated price of each number at that card (the budget gate's reservations)."""
    prices = card_prices(card_id)
    return [unit_price(prices, country=phone_region(n), category=category) for n in numbers]


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
