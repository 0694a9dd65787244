"""``send_window`` and ``recipients[i].timezone`` (docs/api.md): the window ``{start, end, days?, timezone?}`` in the
recipient's local time, and IANA zone names. The window is kept as given (its GET shows it so); the rule that reads
it is broadcasts/rules/send_windows.py."""

import re
from functools import cache
from typing import Any
from zoneinfo import available_timezones

from broadcasts.validation.errors import Errors, error_add

# Days as the request names them, Monday first (date.weekday()'s order; rules/send_windows.py reads them so).
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

_HH_MM = re.compile(r"(?:[01][0-9]|2[0-3]):[0-5][0-9]")
_FIELDS = frozenset({"start", "end", "days", "timezone"})
MAX_ZONE_NAME = 64  # Send.time_zone's column
INVALID_ZONE = "Not an IANA time-zone name (e.g. America/Mexico_City)."


@cache
def _zone_names() -> frozenset[str]:
    # The system's tz database (or the tzdata package): the names zoneinfo can load, read once per process.
    return frozenset(name for name in available_timezones() if len(name) <= MAX_ZONE_NAME)


def time_zone_clean(errors: Errors, path: str, value: Any) -> str | None:
    """An IANA zone name as given (case as the database spells it), or None with its error added."""
    if not isinstance(value, str):
        error_add(errors, path, "Must be a string: an IANA time-zone name (e.g. America/Mexico_City).")
        return None
    if value not in _zone_names():
        error_add(errors, path, INVALID_ZONE)
        return None
    return value


def _hh_mm(errors: Errors, path: str, value: Any) -> str | None:
    if value is None:
        error_add(errors, path, "This field is required.")
        return None
    if not isinstance(value, str) or not _HH_MM.fullmatch(value):
        error_add(errors, path, 'Must be a time "HH:MM" from 00:00 to 23:59.')
        return None
    return value


def _days(errors: Errors, value: Any) -> list[str] | None:
    if not isinstance(value, list):
        error_add(errors, "send_window.days", f"Must be an array of days among {', '.join(DAYS)}.")
        return None
    if not value:
        error_add(errors, "send_window.days", "At least one day is required (omit days for every day).")
        return None
    ok = True
    for i, day in enumerate(value):
        if not isinstance(day, str) or day not in DAYS:
            error_add(errors, f"send_window.days[{i}]", f"Not a day: one of {', '.join(DAYS)}.")
            ok = False
    return value if ok else None


def send_window_clean(errors: Errors, value: Any) -> dict[str, Any] | None:
    """The window as given (only the fields given), or None when omitted, null or invalid (errors added)."""
    if value is None:
        return None
    if not isinstance(value, dict):
        error_add(errors, "send_window", 'Must be an object {"start": "HH:MM", "end": "HH:MM", "days"?, "timezone"?}.')
        return None
    before = len(errors)
    for key in value:
        if key not in _FIELDS:
            error_add(errors, f"send_window.{key}"[:200], "Unknown field: the window takes start, end, days, timezone.")
    start = _hh_mm(errors, "send_window.start", value.get("start"))
    end = _hh_mm(errors, "send_window.end", value.get("end"))
    if start is not None and start == end:
        error_add(errors, "send_window.end", "Must differ from start (an always-open window is no window: omit it).")
    window: dict[str, Any] = {"start": start, "end": end}
    if value.get("days") is not None:
        window["days"] = _days(errors, value["days"])
    if value.get("timezone") is not None:
        window["timezone"] = time_zone_clean(errors, "send_window.timezone", value["timezone"])
    return window if len(errors) == before else None
