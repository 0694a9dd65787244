"""A rate card's CSV (docs/operations.md, ``load_rate_card``): parsed and checked line by line, nothing stored here
(broadcasts/pricing.py stores a parsed card)."""

from __future__ import annotations

import csv
import io
import re
from decimal import Decimal

import phonenumbers

from templates_registry.models import Template

CATEGORIES = tuple(Template.Category.values)
ANY_COUNTRY = "*"
CSV_COLUMNS = ("country", "category", "price", "currency")
IN_WINDOW_COLUMN = "in_window_price"  # optional fifth column: the price inside an open customer-service window
# Prices: at most 6 decimals (the column's scale) and below a million per message.
MAX_PRICE = Decimal("1000000")
PRICE_PLACES = 6
_CURRENCY = re.compile(r"[A-Z]{3}")
_DECIMAL = re.compile(r"[0-9]{1,10}(\.[0-9]{1,6})?")


class RateCardError(ValueError):
    """A rate card file that cannot be loaded; the message names the line."""


Row = tuple[str, str, Decimal, Decimal | None]  # country, category, price, in-window price (None: not given)


def _price_cell(line: int, name: str, raw: str) -> Decimal:
    if not _DECIMAL.fullmatch(raw):
        raise RateCardError(f"line {line}: {name} {raw!r} is not a non-negative decimal like 0.0625 (at most 6 places)")
    price = Decimal(raw)
    if price >= MAX_PRICE:
        raise RateCardError(f"line {line}: {name} {raw} is too large")
    return price


def rate_card_parse(text: str) -> tuple[str, list[Row]]:
    """(currency, [(country, category, price, in_window_price)]) of a CSV rate card; RateCardError naming the first
    bad line.

    Header ``country,category,price,currency`` and optionally ``in_window_price`` (any order, any case); ``country``
    an ISO 3166 alpha-2 code that libphonenumber knows, or ``*``; ``category`` MARKETING, UTILITY or AUTHENTICATION
    (any case); ``price`` a non-negative decimal with at most 6 places, ``in_window_price`` too or empty (the row has
    none); ``currency`` ISO 4217, the same on every row; one row per (country, category)."""
    reader = csv.reader(io.StringIO(text))
    try:
        header = next(reader)
    except StopIteration:
        raise RateCardError("line 1: the file is empty; expected the header " + ",".join(CSV_COLUMNS)) from None
    except csv.Error as exc:
        raise RateCardError(f"line 1: {exc}") from None
    names = [h.strip().lower().lstrip("\ufeff") for h in header]
    if sorted(names) not in (sorted(CSV_COLUMNS), sorted((*CSV_COLUMNS, IN_WINDOW_COLUMN))):
        raise RateCardError(
            f"line 1: the header must be {','.join(CSV_COLUMNS)}[,{IN_WINDOW_COLUMN}]; got {','.join(header)}"
        )
    where = {name: names.index(name) for name in names}
    currency: str | None = None
    rows: list[Row] = []
    seen: dict[tuple[str, str], int] = {}
    try:
        for cells in reader:
            line = reader.line_num
            if not any(cell.strip() for cell in cells):
                continue  # blank line
            if len(cells) != len(names):
                raise RateCardError(f"line {line}: expected {len(names)} columns, got {len(cells)}")
            country = cells[where["country"]].strip().upper()
            category = cells[where["category"]].strip().upper()
            raw_price = cells[where["price"]].strip()
            row_currency = cells[where["currency"]].strip().upper()
            if country != ANY_COUNTRY and country not in phonenumbers.SUPPORTED_REGIONS:
                raise RateCardError(f"line {line}: country {country!r} is not an ISO 3166 alpha-2 code nor '*'")
            if category not in CATEGORIES:
                raise RateCardError(f"line {line}: category {category!r} is not one of {', '.join(CATEGORIES)}")
            price = _price_cell(line, "price", raw_price)
            raw_in_window = cells[where[IN_WINDOW_COLUMN]].strip() if IN_WINDOW_COLUMN in where else ""
            in_window = _price_cell(line, IN_WINDOW_COLUMN, raw_in_window) if raw_in_window else None
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
            rows.append((country, category, price, in_window))
    except csv.Error as exc:
        raise RateCardError(f"line {reader.line_num}: {exc}") from None
    if currency is None:
        raise RateCardError("line 2: no price rows after the header")
    return currency, rows
