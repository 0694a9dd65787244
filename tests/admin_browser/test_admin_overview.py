"""The operator's overview and the broadcast list's paused reason and filters, in headless Chromium: the numbers
beside each chart are the kept rollups' and the charts draw them (bars with height, a gauge with a fill)."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

from broadcasts.models import Broadcast, BroadcastStatus, ChannelMinute, SendStatus
from broadcasts.rollups import activity_add, minute_of
from broadcasts.rules.messaging_limit import admit
from templates_registry.models import Channel, Template
from tests.admin_browser.test_admin_pages import make_broadcast, row_of

pytestmark = pytest.mark.browser


def seconds_at(rate: int) -> list[int]:
    """A minute at ``rate`` POSTs per second, a little under it in every 7th second."""
    return [rate - (3 if s % 7 == 0 else 0) for s in range(60)]


@pytest.fixture
def scene(org, channel, template):
    """Channel 1 (max_mps 80) busy for 40 minutes near its cap, peaking at 80/s; channel 2 (max_mps 20) quiet;
    the organization at 120 of 250 numbers of its messaging limit; failures by code; a priced month."""
    now = timezone.now()
    channel.name = "Madrid store"
    channel.save()
    quiet = Channel.objects.create(
        organization=org,
        name="Support line",
        phone_number_id="100000000000002",
        waba_id=channel.waba_id,
        access_token="t",
        max_mps=20,
    )
    utility = Template.objects.create(
        waba_id=channel.waba_id,
        name="order_update",
        language="es",
        status=Template.Status.APPROVED,
        category="UTILITY",
        parameter_format=Template.ParameterFormat.NAMED,
        components=[{"type": "BODY", "text": "Tu pedido {{pedido}}"}],
        body_variables=["pedido"],
    )
    minute = minute_of(now)
    ChannelMinute.objects.bulk_create(
        ChannelMinute(channel=channel, minute=minute - timedelta(minutes=m), per_second=seconds_at(70 + (m % 5) * 2))
        for m in range(1, 41)
    )
    # the busiest second, through the writer itself: 80 POSTs in second 30 of this minute
    activity_add(now=now, posted=[minute + timedelta(seconds=30)] * 80, channel_id=channel.id)
    activity_add(
        now=now, posted=[minute - timedelta(minutes=m, seconds=-m) for m in range(0, 60, 3)] * 4, channel_id=quiet.id
    )
    S = SendStatus
    running = make_broadcast(
        channel, template, "Cyber Monday", BroadcastStatus.IN_PROGRESS, [S.SENT] * 6 + [S.PENDING] * 4, created_at=now
    )
    paused = make_broadcast(
        quiet,
        utility,
        "Order updates",
        BroadcastStatus.PAUSED,
        [S.DELIVERED] * 3 + [S.PENDING] * 7,
        created_at=now,
        paused_reason={"code": "131048", "message": "Spam rate limit hit"},
    )
    scheduled = make_broadcast(
        channel,
        template,
        "New year",
        BroadcastStatus.PENDING,
        [S.PENDING] * 5,
        created_at=now,
        scheduled_at=now + timedelta(days=3),
    )
    failures = [(running.id, "131026")] * 7 + [(running.id, "131049")] * 3 + [(paused.id, "131048")]
    activity_add(now=now, failures=[*failures, (running.id, "opted_out"), (running.id, "opted_out")])
    for broadcast, estimated, billed in ((running, "41.20", "18.75"), (paused, "3.10", "0.95")):
        Broadcast.objects.filter(id=broadcast.id).update(
            cost_currency="EUR", cost_estimated=Decimal(estimated), billed=Decimal(billed)
        )
    org.messaging_limit = 250
    org.save()
    admit(organization_id=org.id, channel_id=channel.id, numbers=[f"+3460000{i:04d}" for i in range(120)], now=now)
    return {
        "busy": channel,
        "quiet": quiet,
        "running": running,
        "paused": paused,
        "scheduled": scheduled,
        "utility": utility,
    }


def channel_block(browser, channel):
    return browser.find(f'.overview-channel[data-channel="{channel.id}"]')


def test_the_overview_shows_each_channels_rate_limit_failures_and_cost(browser, org, scene):
    browser.open("/admin/")
    browser.click_and_wait("#overview-link a")
    assert "All organizations" in browser.find("#org").text  # a superuser sees every organization at once
    browser.open(f"/admin/overview/?org={org.id}")
    busy = channel_block(browser, scene["busy"])
    numbers = busy.find_element("css selector", ".overview-numbers").text
    expected_posted = sum(sum(seconds_at(70 + (m % 5) * 2)) for m in range(1, 41)) + 80
    assert f"posted in the last hour\n{expected_posted} " in numbers
    assert "80/s of max_mps 80 (100%)" in numbers
    assert "120 of 250 numbers" in numbers
    # the chart draws them: 60 bars, the 41 with POSTs have height, the cap line is drawn
    bars = busy.find_elements("css selector", "svg.chart rect.bar")
    assert len(bars) == 60
    assert sum(1 for bar in bars if bar.rect["height"] > 1) == 41
    assert busy.find_elements("css selector", "svg.chart line.cap")
    gauge = busy.find_element("css selector", ".peak svg.gauge rect.fill")
    assert gauge.rect["width"] > 200  # full: at the cap
    quiet = channel_block(browser, scene["quiet"]).find_element("css selector", ".overview-numbers").text
    assert "posted in the last hour\n80 " in quiet and "4/s of max_mps 20 (20%)" in quiet
    # broadcasts by state, with the paused reason
    assert "Cyber Monday" in browser.find('table[data-list="running"]').text
    assert "131048: Spam rate limit hit" in browser.find('table[data-list="paused"]').text
    assert "New year" in browser.find('table[data-list="scheduled"]').text
    # failures by code, most frequent first, drawn
    codes = [
        (row.get_attribute("data-code"), row.find_element("css selector", ".count").text)
        for row in browser.find_all("tr.failure")
    ]
    assert codes == [("131026", "7"), ("131049", "3"), ("opted_out", "2"), ("131048", "1")]
    failure_bars = browser.find_all("#overview-failures svg rect.bar")
    assert [bar.get_attribute("data-value") for bar in failure_bars] == ["7", "3", "2", "1"]
    assert all(bar.rect["width"] > 10 for bar in failure_bars)
    # cost this month
    cost = browser.find('tr.cost[data-currency="EUR"]')
    assert cost.find_element("css selector", ".estimated").text == "44.30"
    assert cost.find_element("css selector", ".billed").text == "19.70"
    browser.screenshot("overview")


def test_the_broadcast_list_shows_the_paused_reason_and_filters_by_channel_and_template(browser, scene):
    browser.open("/admin/broadcasts/broadcast/")
    paused = row_of(browser, "Order updates")
    assert paused.find_element("css selector", "td.field-paused_reason_text").text == "131048: Spam rate limit hit"
    assert "0.95 billed of 3.10 estimated EUR" in paused.find_element("css selector", "td.field-cost").text
    assert row_of(browser, "Cyber Monday").find_element("css selector", "td.field-paused_reason_text").text == "-"
    # the template filter, as an operator clicks it
    filters = browser.find("#changelist-filter")
    link = [a for a in filters.find_elements("css selector", "a") if a.text == str(scene["utility"])]
    assert link, filters.text
    old = browser.find("html")
    link[0].click()
    WebDriverWait(browser.driver, 15).until(expected_conditions.staleness_of(old))
    assert "template__id__exact" in browser.driver.current_url
    names = [
        row.find_element("css selector", "th.field-campaign_name").text
        for row in browser.find_all("#result_list tbody tr")
    ]
    assert names == ["Order updates"]
    browser.screenshot("broadcast_list_filtered")
    # and the channel filter
    browser.open(f"/admin/broadcasts/broadcast/?channel__id__exact={scene['busy'].id}")
    names = sorted(
        row.find_element("css selector", "th.field-campaign_name").text
        for row in browser.find_all("#result_list tbody tr")
    )
    assert names == ["Cyber Monday", "New year"]
