"""The one timestamp format of the API and of every event: ISO 8601 in UTC with a ``Z``."""

from datetime import UTC, datetime


def iso_utc(value: datetime | None) -> str | None:
    """``2026-12-01T10:27:01.123456Z`` for an aware datetime, None for None."""
    if value is None:
        return None
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
