"""The admin overview (broadcasts/overview.py, broadcasts/admin_overview.py): numbers from the kept rollups and the
broadcasts' kept sums, for one organization or all; who may see it; a fixed number of statements."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from broadcasts.models import Broadcast, BroadcastStatus, ChannelMinute, FailureHour
from broadcasts.overview import overview_read
from broadcasts.retention import rollups_purge
from broadcasts.rollups import activity_add, minute_of
from templates_registry.models import Channel
from tests.events.helpers import broadcast_with_sends
from tokens.models import Organization

URL = "/admin/overview/"


@pytest.fixture
def other_channel(other_org) -> Channel:
    return Channel.objects.create(
        organization=other_org, phone_number_id="100000000000009", waba_id="200000000000009", access_token="t"
    )


def busy_hour(channel, broadcast, now: datetime) -> None:
    """10 POSTs 5 minutes ago (4 in one second), 3 this minute; failures 131026 x2, 131049 x1, and one 25 h ago."""
    five_ago = minute_of(now) - timedelta(minutes=5)
    activity_add(
        now=now, posted=[five_ago + timedelta(seconds=s) for s in (1, 1, 1, 1, 2, 3, 4, 5, 6, 7)], channel_id=channel.id
    )
    activity_add(now=now, posted=[minute_of(now)] * 3, channel_id=channel.id)
    activity_add(now=now, failures=[(broadcast.id, "131026"), (broadcast.id, "131026"), (broadcast.id, "131049")])
    activity_add(now=now - timedelta(hours=25), failures=[(broadcast.id, "131000")])


def priced(broadcast: Broadcast, estimated: str, billed: str, currency: str = "EUR") -> None:
    Broadcast.objects.filter(id=broadcast.id).update(
        cost_currency=currency, cost_estimated=Decimal(estimated), billed=Decimal(billed)
    )


@pytest.mark.django_db
def test_the_overview_reads_rates_failures_broadcasts_and_cost(org, channel, template, other_channel):
    now = timezone.now()
    broadcast = broadcast_with_sends(org=org, channel=channel, template=template, count=2)
    busy_hour(channel, broadcast, now)
    activity_add(now=now, posted=[now], channel_id=other_channel.id)  # another organization's: not ours
    priced(broadcast, "12.50", "3.25")
    old = broadcast_with_sends(org=org, channel=channel, template=template, count=1)
    priced(old, "100", "100")
    Broadcast.objects.filter(id=old.id).update(
        created_at=now.replace(day=1) - timedelta(days=1), status=BroadcastStatus.COMPLETED
    )
    Broadcast.objects.filter(id=broadcast.id).update(status=BroadcastStatus.PAUSED, paused_reason={"code": "manual"})

    overview = overview_read(organization_id=org.id, now=now)

    assert [rate.channel.id for rate in overview.channels] == [channel.id]
    rate = overview.channels[0]
    assert rate.posted == 13 and rate.per_minute[-1] == 3 and rate.per_minute[-6] == 10
    assert rate.peak_second == 4 and rate.peak_at == (minute_of(now) - timedelta(minutes=5) + timedelta(seconds=1))
    assert (rate.limit, rate.limit_used) == (None, None)  # unlimited
    assert [(f.code, f.count) for f in overview.failures] == [("131026", 2), ("131049", 1)]
    assert [b.id for b in overview.broadcasts["paused"]] == [broadcast.id]
    assert overview.broadcasts["running"] == [] and overview.broadcasts["scheduled"] == []
    assert [(c.currency, c.estimated, c.billed, c.broadcasts) for c in overview.cost] == [
        ("EUR", Decimal("12.5"), Decimal("3.25"), 1)
    ]
    # all organizations: the other one's channel too
    assert {r.channel.id for r in overview_read(organization_id=None, now=now).channels} == {
        channel.id,
        other_channel.id,
    }


@pytest.mark.django_db
def test_the_messaging_limit_shows_the_ledger(org, channel, settings):
    org.messaging_limit = 250
    org.save()
    rate = overview_read(organization_id=org.id, now=timezone.now()).channels[0]
    # nothing counted in Redis yet: the page says so instead of reading the sends
    assert (rate.limit, rate.limit_used) == (250, None)


@pytest.mark.django_db
def test_the_page_costs_a_fixed_number_of_statements(admin_client, org, channel, template, other_channel):
    now = timezone.now()
    broadcast = broadcast_with_sends(org=org, channel=channel, template=template, count=2)
    busy_hour(channel, broadcast, now)
    with CaptureQueriesContext(connection) as few:
        assert admin_client.get(URL, {"org": org.id}).status_code == 200
    for i in range(5):
        extra = broadcast_with_sends(org=org, channel=channel, template=template, count=1)
        Broadcast.objects.filter(id=extra.id).update(status=BroadcastStatus.PAUSED)
        busy_hour(channel, extra, now - timedelta(minutes=i))
    with CaptureQueriesContext(connection) as more:
        assert admin_client.get(URL, {"org": org.id}).status_code == 200
    assert len(more) == len(few)
    assert not any("broadcasts_send" in q["sql"] for q in more.captured_queries)
    # all organizations: more of them (limited ones, with their ledgers) cost no statement more
    with CaptureQueriesContext(connection) as one:
        assert admin_client.get(URL, {"org": "all"}).status_code == 200
    for k in range(4):
        other = Organization.objects.create(name=f"other {k}", messaging_limit=2000)
        Channel.objects.create(organization=other, phone_number_id=f"1500000000000{k}", waba_id="2", access_token="t")
    with CaptureQueriesContext(connection) as many:
        assert admin_client.get(URL, {"org": "all"}).status_code == 200
    assert len(many) == len(one)


@pytest.mark.django_db
def test_the_page_shows_numbers_and_charts(admin_client, org, channel, template):
    now = timezone.now()
    broadcast = broadcast_with_sends(org=org, channel=channel, template=template, count=2)
    busy_hour(channel, broadcast, now)
    priced(broadcast, "12.50", "3.25")
    html = admin_client.get(URL, {"org": org.id}).content.decode()
    assert "4/s of max_mps 80 (5%)" in html
    assert html.count('<rect class="bar"') == 60 + 2  # a bar per minute, one per failure code
    assert 'data-value="10"' in html and 'data-label="131026" data-value="2"' in html
    assert '<td class="estimated">12.50</td><td class="billed">3.25</td>' in html
    assert "<script" not in html.split('id="content-main"')[1]


@pytest.mark.django_db
def test_superusers_see_all_organizations_and_bad_choices_are_4xx(admin_client, org, channel):
    response = admin_client.get(URL)
    assert response.status_code == 200 and response.context["organization"] is None
    assert admin_client.get(URL, {"org": "x1"}).status_code == 400
    assert admin_client.get(URL, {"org": "9" * 30}).status_code == 400
    assert admin_client.get(URL, {"org": "999999"}).status_code == 404
    index = admin_client.get("/admin/").content.decode()
    assert 'href="/admin/overview/"' in index


@pytest.mark.django_db
def test_staff_need_the_view_permission_and_get_one_organization(client, org, other_org, channel):
    user = get_user_model().objects.create_user("viewer", password="pw-123456789", is_staff=True)
    client.force_login(user)
    assert client.get(URL).status_code == 403
    user.user_permissions.add(Permission.objects.get(codename="view_broadcast"))
    response = client.get(URL)
    assert response.status_code == 200
    assert response.context["organization"] is not None  # not all at once: only superusers
    client.logout()
    assert client.get(URL).status_code == 302  # to the login page


@pytest.mark.django_db
def test_retention_drops_old_rollups(org, channel, template):
    now = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
    broadcast = broadcast_with_sends(org=org, channel=channel, template=template, count=1)
    for age in (timedelta(hours=1), timedelta(days=2), timedelta(days=8)):
        activity_add(now=now - age, posted=[now - age], channel_id=channel.id, failures=[(broadcast.id, "1")])
    rollups_purge(now=now)
    assert ChannelMinute.objects.count() == 1
    assert FailureHour.objects.count() == 2
