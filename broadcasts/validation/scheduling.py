"""``scheduled_at``: an ISO 8601 instant with an offset, in the future, at most 90 days ahead (docs/api.md); the same
form for a retry's ``not_before`` (30 days)."""

from datetime import UTC, datetime, timedelta
from typing import Any

MAX_SCHEDULE_AHEAD = timedelta(days=90)


def parse_scheduled_at(
    value: Any, *, now: datetime, max_ahead: timedelta = MAX_SCHEDULE_AHEAD
) -> tuple[datetime | None, str | None]:
    """(the instant in UTC, None) or (None, the error). Omitted and null mean "now". Also a retry's ``not_before``
    (``max_ahead`` 30 days)."""
    if value is None:
        return None, None
    if not isinstance(value, str):
        return None, "Must be an ISO 8601 date-time string with an offset, or null."
    if not value or len(value) > 64 or "\x00" in value:
        return None, "Must be an ISO 8601 date-time with an offset, e.g. 2026-11-27T14:03:00+01:00."
    try:
        instant = datetime.fromisoformat(value)
    except ValueError:
        return None, "Must be an ISO 8601 date-time with an offset, e.g. 2026-11-27T14:03:00+01:00."
    if instant.tzinfo is None or instant.utcoffset() is None:
        return None, "Must include a UTC offset (e.g. Z or +01:00)."
    try:
        instant = instant.astimezone(UTC)
    except (OverflowError, ValueError):
        return None, "Out of range."
    if instant <= now:
        return None, "Must be in the future."
    if instant > now + max_ahead:
        return None, f"Must be at most {max_ahead.days} days ahead."
    return instant, None
