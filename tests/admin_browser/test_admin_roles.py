"""A read-only operator's admin, in headless Chromium: every operational list and page is there, with no control
that changes anything; the template's status is text, and a broadcast's token is hidden (tokens/roles.py)."""

import django.apps
import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group

from broadcasts.models import BroadcastStatus, SendStatus
from tests.admin_browser.conftest import PASSWORD, Browser
from tests.admin_browser.test_admin_pages import assert_no_delete, change_path, make_broadcast
from tokens.admin_visibility import HIDDEN
from tokens.roles import OPERATORS, roles_sync
from tokens.services import token_create

pytestmark = pytest.mark.browser

LISTS = [
    ("/admin/broadcasts/broadcast/", "Spring sale"),
    ("/admin/broadcasts/send/", "+3461234"),
    ("/admin/templates_registry/channel/", "100000000000001"),
    ("/admin/templates_registry/template/", "welcome_v2"),
    ("/admin/tokens/organization/", "Acme"),
    ("/admin/events/webhookendpoint/", ""),
    ("/admin/broadcasts/suppression/", ""),
]


@pytest.fixture
def readonly(browser: Browser) -> Browser:
    """The same browser, logged in again through the login form as a member of the read-only operators only."""
    roles_sync(apps=django.apps.apps)  # the live server's database is flushed between tests: the migration's groups
    user = get_user_model().objects.create_user("watcher", password=PASSWORD, is_staff=True)
    user.groups.add(Group.objects.get(name=OPERATORS))
    browser.driver.delete_all_cookies()
    browser.open("/admin/login/")
    browser.find("#id_username").send_keys("watcher")
    browser.find("#id_password").send_keys(PASSWORD)
    browser.click_and_wait("input[type=submit]")
    assert "Site administration" in browser.text(), browser.text()
    return browser


def test_a_readonly_operator_sees_everything_and_can_change_nothing(readonly, channel, template):
    token = token_create(organization=channel.organization, scopes=["messages:bulk"], name="crm-nightly").token
    broadcast = make_broadcast(
        channel,
        template,
        "Spring sale",
        BroadcastStatus.IN_PROGRESS,
        [SendStatus.SENT] * 3 + [SendStatus.PENDING] * 2,
        created_by_token=token,
    )
    # the home page: the operational models, no API tokens, no add links
    readonly.open("/admin/")
    home = readonly.text()
    assert "Broadcasts" in home and "Templates" in home and "Access tokens" not in home
    assert not readonly.find_all("a.addlink")
    readonly.screenshot("readonly_home")
    for path, expected in LISTS:
        readonly.open(path)
        assert expected in readonly.text(), path
        assert not readonly.find_all("a.addlink"), path
        assert_no_delete(readonly)
        # no action changes anything: the only ones offered, if any, are none (cancel, remove, sync need "change")
        options = [o.get_attribute("value") for o in readonly.find_all("select[name=action] option")]
        assert options in ([], [""]), (path, options)
    readonly.open("/admin/broadcasts/broadcast/")
    readonly.screenshot("readonly_broadcast_list")
    # the broadcast page: read, export; no Cancel/Pause, no Save; the token that made it is not named
    readonly.open(change_path(broadcast))
    assert not readonly.find_all("#action-cancel") and not readonly.find_all("#action-pause")
    assert not readonly.find_all("input[name=_save]") and not readonly.find_all("input[name=campaign_name]")
    assert readonly.find_all("#export-csv")
    page = readonly.text()
    assert HIDDEN in page and token.prefix not in page and "crm-nightly" not in page
    assert "Spring sale" in page
    readonly.screenshot("readonly_broadcast_page")
    # the template's status is Meta's: shown as text, nothing to pick
    readonly.open(f"/admin/templates_registry/template/{template.pk}/change/")
    assert not readonly.find_all("select[name=status]") and not readonly.find_all("input[name=_save]")
    assert readonly.find(".field-status .readonly").text == "APPROVED"
    readonly.screenshot("readonly_template_page")
    # and the token pages do not exist for this role
    readonly.open("/admin/tokens/accesstoken/")
    assert readonly.driver.title == "403 Forbidden"
