"""The send-window rule (broadcasts/rules/send_windows.py): open or not, and when it next opens, across midnight,
days of the week and daylight-saving changes; and the eta of sends waiting for their zones to open."""

from datetime import UTC, datetime, timedelta

import pytest

from broadcasts.rules.send_windows import (
    closed_zones_openings,
    window_eta_seconds,
    window_is_open,
    window_opens_at,
)

NY = "America/New_York"
MADRID = "Europe/Madrid"


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


# 2026-12-07 is a Monday.
@pytest.mark.parametrize(
    "at,expected",
    [
        (utc(2026, 12, 7, 7, 59), False),  # 08:59 Madrid (UTC+1)
        (utc(2026, 12, 7, 8, 0), True),  # 09:00: the opening counts
        (utc(2026, 12, 7, 19, 59, 59), True),  # 20:59:59
        (utc(2026, 12, 7, 20, 0), False),  # 21:00: the closing does not
    ],
)
def test_a_day_window_in_madrid(at, expected):
    assert window_is_open({"start": "09:00", "end": "21:00"}, MADRID, at) is expected


def test_closed_window_opens_next_at_its_start_and_open_one_now():
    window = {"start": "09:00", "end": "21:00"}
    assert window_opens_at(window, MADRID, utc(2026, 12, 7, 6, 0)) == utc(2026, 12, 7, 8, 0)
    # after the closing: the next day's opening
    assert window_opens_at(window, MADRID, utc(2026, 12, 7, 20, 0)) == utc(2026, 12, 8, 8, 0)
    assert window_opens_at(window, MADRID, utc(2026, 12, 7, 12, 30)) == utc(2026, 12, 7, 12, 30)


def test_a_window_spanning_midnight_counts_the_day_it_opened():
    # 22:00-06:00 on Fridays only, New York (UTC-5 in December): Friday 2026-12-11 22:00 to Saturday 06:00.
    window = {"start": "22:00", "end": "06:00", "days": ["fri"]}
    assert window_is_open(window, NY, utc(2026, 12, 12, 3, 0))  # Fri 22:00
    assert window_is_open(window, NY, utc(2026, 12, 12, 10, 59))  # Sat 05:59: still Friday's window
    assert not window_is_open(window, NY, utc(2026, 12, 12, 11, 0))  # Sat 06:00
    # Friday 01:00 belongs to Thursday's window, which Thursday does not have
    assert not window_is_open(window, NY, utc(2026, 12, 11, 6, 0))
    assert window_opens_at(window, NY, utc(2026, 12, 11, 6, 0)) == utc(2026, 12, 12, 3, 0)
    # Saturday night after the window: next Friday
    assert window_opens_at(window, NY, utc(2026, 12, 13, 4, 0)) == utc(2026, 12, 19, 3, 0)


def test_days_of_the_week_are_the_recipient_local_days():
    # Monday 00:30 in Madrid is still Sunday in UTC: a Monday-only window is open there.
    window = {"start": "00:00", "end": "02:00", "days": ["mon"]}
    at = utc(2026, 12, 6, 23, 30)  # Sunday in UTC, Monday 00:30 in Madrid
    assert window_is_open(window, MADRID, at)
    assert not window_is_open(window, "UTC", at)
    assert window_opens_at(window, "UTC", at) == utc(2026, 12, 7, 0, 0)


def test_weekend_days_are_skipped_until_the_next_allowed_one():
    window = {"start": "09:00", "end": "18:00", "days": ["mon", "tue", "wed", "thu", "fri"]}
    # Friday 2026-12-11 19:00 Madrid -> Monday 2026-12-14 09:00 Madrid
    assert window_opens_at(window, MADRID, utc(2026, 12, 11, 18, 0)) == utc(2026, 12, 14, 8, 0)


def test_new_york_spring_forward():
    # 2026-03-08: 02:00 EST becomes 03:00 EDT.
    window = {"start": "09:00", "end": "17:00"}
    assert window_opens_at(window, NY, utc(2026, 3, 7, 23, 0)) == utc(2026, 3, 8, 13, 0)  # 09:00 EDT (UTC-4)
    assert window_opens_at(window, NY, utc(2026, 3, 6, 23, 0)) == utc(2026, 3, 7, 14, 0)  # 09:00 EST (UTC-5)
    # a window opening inside the skipped hour opens at the same instant as its wall time before the gap
    gap = {"start": "02:30", "end": "05:00"}
    assert window_opens_at(gap, NY, utc(2026, 3, 8, 5, 0)) == utc(2026, 3, 8, 7, 30)  # 03:30 EDT
    assert not window_is_open(gap, NY, utc(2026, 3, 8, 7, 29))
    assert window_is_open(gap, NY, utc(2026, 3, 8, 7, 30))
    # a window wholly inside the skipped hour happens an hour later, whole
    inside = {"start": "02:10", "end": "02:50"}
    assert window_opens_at(inside, NY, utc(2026, 3, 8, 5, 0)) == utc(2026, 3, 8, 7, 10)  # 03:10 EDT
    assert not window_is_open(inside, NY, utc(2026, 3, 8, 7, 50))
    # one that would close before it opens (02:30 read as 03:30 EDT, closing at 03:15 EDT) has no window that day
    swallowed = {"start": "02:30", "end": "03:15"}
    assert window_opens_at(swallowed, NY, utc(2026, 3, 8, 5, 0)) == utc(2026, 3, 9, 6, 30)


def test_new_york_fall_back_and_a_midnight_span_across_it():
    # 2026-11-01: 02:00 EDT becomes 01:00 EST; the night's window 22:00-06:00 lasts 9 hours.
    window = {"start": "22:00", "end": "06:00"}
    opens = window_opens_at(window, NY, utc(2026, 10, 31, 20, 0))
    assert opens == utc(2026, 11, 1, 2, 0)  # Sat 22:00 EDT
    assert window_is_open(window, NY, utc(2026, 11, 1, 10, 59))  # 05:59 EST
    assert not window_is_open(window, NY, utc(2026, 11, 1, 11, 0))  # 06:00 EST
    # a repeated wall time counts at its first occurrence
    repeated = {"start": "01:30", "end": "03:00"}
    assert window_opens_at(repeated, NY, utc(2026, 11, 1, 4, 0)) == utc(2026, 11, 1, 5, 30)  # 01:30 EDT


def test_madrid_changes():
    window = {"start": "09:00", "end": "21:00"}
    # 2026-03-29: CET -> CEST; 2026-10-25: CEST -> CET
    assert window_opens_at(window, MADRID, utc(2026, 3, 28, 21, 0)) == utc(2026, 3, 29, 7, 0)
    assert window_opens_at(window, MADRID, utc(2026, 10, 24, 20, 0)) == utc(2026, 10, 25, 8, 0)
    night = {"start": "23:00", "end": "08:00"}
    assert window_is_open(night, MADRID, utc(2026, 3, 29, 5, 59))  # 07:59 CEST
    assert not window_is_open(night, MADRID, utc(2026, 3, 29, 6, 0))  # 08:00 CEST


def test_closed_zones_are_listed_with_their_openings_earliest_first():
    window = {"start": "09:00", "end": "21:00"}
    at = utc(2026, 12, 7, 12, 0)  # 13:00 Madrid (open), 07:00 New York, 21:00 Tokyo (just closed)
    openings = closed_zones_openings(window, {MADRID: 3, NY: 5, "Asia/Tokyo": 2}, at)
    assert openings == [(utc(2026, 12, 7, 14, 0), 5), (utc(2026, 12, 8, 0, 0), 2)]


def test_eta_of_zones_opening_one_after_the_other():
    now = utc(2026, 12, 7, 12, 0)
    openings = [(now + timedelta(seconds=100), 1000), (now + timedelta(seconds=110), 10)]
    # the 1010 sends from the first opening on queue at 10/s: the last leaves at 100 + 101 s
    assert window_eta_seconds(openings=openings, rate=10, now=now) == pytest.approx(201.0)
    late = [(now + timedelta(seconds=100), 10), (now + timedelta(hours=1), 10)]
    assert window_eta_seconds(openings=late, rate=10, now=now) == pytest.approx(3601.0)
    assert window_eta_seconds(openings=[], rate=10, now=now) == 0.0
