"""How the admin shows times: to the second and with the zone (``2026-12-01 10:37:57 UTC``).

Django's admin shows a DateTimeField as ``Dec. 1, 2026, 10:37 a.m.``: no seconds, no zone. The ModelAdmins list
``utc_time("created_at")`` columns and read-only fields instead of the bare field names.
"""

from collections.abc import Callable
from datetime import datetime
from typing import Any

from django.contrib import admin
from django.utils import timezone

EMPTY = "-"


def admin_datetime(value: datetime | None) -> str:
    """``2026-12-01 10:37:57 UTC`` in the current time zone (settings.TIME_ZONE, UTC), ``-`` for None."""
    if value is None:
        return EMPTY
    return timezone.localtime(value).strftime("%Y-%m-%d %H:%M:%S %Z")


def utc_time(field: str, description: str | None = None) -> Callable[[Any, Any], str]:
    """A ModelAdmin attribute showing ``obj.<field>`` with ``admin_datetime``, sortable by the field.

    Assign it on the ModelAdmin (``created_at_display = utc_time("created_at")``) and list that name in
    ``list_display`` / ``readonly_fields``.
    """

    @admin.display(description=description or field.replace("_", " "), ordering=field)
    def show(_model_admin: Any, obj: Any) -> str:
        return admin_datetime(getattr(obj, field))

    show.__name__ = f"{field}_display"
    return show
