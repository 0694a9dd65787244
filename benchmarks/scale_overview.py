"""bench_scale's admin overview figures (docs/operations.md): the rollups retention keeps, seeded for every channel,
and the page timed and its statements captured in-process (the view, its queries and its template)."""

from collections.abc import Callable
from datetime import timedelta

from django.contrib.auth import get_user_model
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from broadcasts.models import ChannelMinute, FailureHour
from templates_registry.models import Channel

URL = "/admin/overview/"
CODES = ("131026", "131049", "131000", "131048", "opted_out")


def rollups_seed(channels: list[Channel]):
    """A day of busy minutes and a week of hourly failures (5 codes) for every channel, as retention keeps them;
    returns the superuser who reads the page."""
    now = timezone.now()
    minute = now.replace(second=0, microsecond=0)
    hour = now.replace(minute=0, second=0, microsecond=0)
    for channel in channels:
        ChannelMinute.objects.bulk_create(
            (
                ChannelMinute(channel=channel, minute=minute - timedelta(minutes=m), per_second=[60 + m % 20] * 60)
                for m in range(24 * 60)
            ),
            batch_size=2000,
        )
        FailureHour.objects.bulk_create(
            FailureHour(channel=channel, hour=hour - timedelta(hours=h), code=code, failed=1 + h % 7)
            for h in range(7 * 24)
            for code in CODES
        )
    return get_user_model().objects.create_superuser("bench-operator", "ops@example.com", "bench-operator-pw")


def _client(operator) -> Client:
    client = Client()
    client.force_login(operator)
    return client


def overview_figures(*, operator, organization_id: int, median_ms: Callable) -> dict[str, float]:
    client = _client(operator)

    def get(org: str) -> None:
        assert client.get(URL, {"org": org}).status_code == 200

    return {
        "admin overview (one org)": median_ms(lambda: get(str(organization_id))),
        "admin overview (all orgs)": median_ms(lambda: get("all")),
    }


def overview_queries(*, operator, organization_id: int) -> dict[str, list]:
    client = _client(operator)
    paths = {}
    for org in (str(organization_id), "all"):
        with CaptureQueriesContext(connection) as ctx:
            assert client.get(URL, {"org": org}).status_code == 200
        paths[f"admin overview ({org})"] = list(ctx.captured_queries)
    return paths
