"""Send windows (docs/rules.md "Campaign controls: send windows"): a broadcast's sends leave only while the
recipient's local time is inside ``{start, end, days?}``. Pure functions over the window as stored
(``Broadcast.send_window``), an IANA zone name and an aware instant; no database, no Redis.

- ``start`` after ``end`` spans midnight: the window opened on an allowed day runs into the next day (the day that
  counts is the one on which the window opened).
- Daylight-saving changes: each opening and closing is the wall-clock time of that day in the zone. A wall time a
  spring-forward gap skips is read with the offset before the gap (02:30 on the night New York skips 02:00-03:00
  opens at 03:30 EDT, the same instant as 02:30 EST; a window wholly inside the gap so happens an hour later); a wall
  time a fall-back repeats counts at its first occurrence. A day whose window the gap leaves closing no later than it
  opens (02:30-03:15 that night) has no window.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

from broadcasts.validation.send_window import DAYS

# Days looked at around an instant: the window opened yesterday (spanning midnight) up to a week ahead.
_LOOK_BACK_DAYS = 1
_LOOK_AHEAD_DAYS = 8


class Window(NamedTuple):
    start: time
    end: time
    days: frozenset[int]  # date.weekday() values allowed: 0 = Monday


@lru_cache(maxsize=256)
def _window(start: str, end: str, days: tuple[str, ...] | None) -> Window:
    allowed = frozenset(range(7)) if days is None else frozenset(DAYS.index(d) for d in days)
    return Window(time.fromisoformat(start), time.fromisoformat(end), allowed)


def window_of(send_window: dict[str, Any]) -> Window:
    """The stored ``send_window`` (already validated: broadcasts/validation/send_window.py) as a ``Window``."""
    days = send_window.get("days")
    return _window(send_window["start"], send_window["end"], tuple(days) if days is not None else None)


@lru_cache(maxsize=1024)
def zone_info(name: str) -> ZoneInfo:
    return ZoneInfo(name or "UTC")  # a send stored without a zone reads its window in UTC


def _spans(window: Window, zone: ZoneInfo, around: datetime) -> list[tuple[datetime, datetime]]:
    """The window's (opening, closing) instants in UTC on the allowed days around ``around``, in order."""
    today = around.astimezone(zone).date()
    spans = []
    for offset in range(-_LOOK_BACK_DAYS, _LOOK_AHEAD_DAYS):
        day = today + timedelta(days=offset)
        if day.weekday() not in window.days:
            continue
        opens = _instant(day, window.start, zone)
        closes = _instant(day + timedelta(days=1) if window.end <= window.start else day, window.end, zone)
        if closes > opens:
            spans.append((opens, closes))
    return spans


def _instant(day: date, wall: time, zone: ZoneInfo) -> datetime:
    # fold=0: the first occurrence of a repeated wall time, the pre-gap offset for a skipped one (see the docstring).
    return datetime.combine(day, wall, tzinfo=zone).astimezone(UTC)


def window_is_open(window: Window | dict[str, Any], zone: str, at: datetime) -> bool:
    """Whether a send to a recipient in ``zone`` may leave at ``at`` (aware)."""
    window = window if isinstance(window, Window) else window_of(window)
    return any(opens <= at < closes for opens, closes in _spans(window, zone_info(zone), at))


def window_opens_at(window: Window | dict[str, Any], zone: str, after: datetime) -> datetime:
    """The first instant at or after ``after`` at which the window is open in ``zone``: ``after`` itself while it is
    open, else its next opening (in UTC). Every window opens within a week (validation demands a day at least)."""
    window = window if isinstance(window, Window) else window_of(window)
    for opens, closes in _spans(window, zone_info(zone), after):
        if after < closes:
            return max(opens, after)
    raise ValueError("A send window without any allowed day never opens.")


def zones_open_at(
    window: Window | dict[str, Any], zones: set[str] | frozenset[str], at: datetime
) -> dict[str, datetime]:
    """Per distinct zone, when the window is next open at or after ``at`` (``at`` itself when open now): one
    computation per zone, whatever the number of sends in it."""
    window = window if isinstance(window, Window) else window_of(window)
    return {zone: window_opens_at(window, zone, at) for zone in zones}


def closed_zones_openings(
    window: Window | dict[str, Any], by_zone: dict[str, int], at: datetime
) -> list[tuple[datetime, int]]:
    """(when the window next opens, how many sends) for each zone of ``by_zone`` (zone -> sends) whose window is
    closed at ``at``, earliest first."""
    opens = zones_open_at(window, set(by_zone), at)
    return sorted((opens[zone], count) for zone, count in by_zone.items() if opens[zone] > at)


def window_eta_seconds(*, openings: list[tuple[datetime, int]], rate: float, now: datetime) -> float:
    """When the last send waiting for its window leaves, in seconds from ``now``: zones open one after the other and
    each opening's sends queue at the channel's cap behind those of the zones that opened before them and have not
    left yet, so the last leaves at the latest of (an opening + the sends from that opening on / the cap)."""
    rate = max(rate, 0.001)
    latest, behind = 0.0, 0
    for opens, count in reversed(openings):
        behind += count
        latest = max(latest, (opens - now).total_seconds() + behind / rate)
    return latest
