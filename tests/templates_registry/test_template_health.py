"""Template health through the webhook receiver: status events mapped as docs/rules.md says, out-of-order updates,
category (final notices only) and quality; the bootstrap commands' --category and --marketing-messages."""

from io import StringIO

import orjson
import pytest
from django.core.management import CommandError, call_command

from templates_registry.models import Channel, Template
from tests.events.helpers import meta_signature

URL = "/v1/webhooks/whatsapp"
SECRET = "meta-app-secret"
T0 = 1_790_000_000


@pytest.fixture(autouse=True)
def _meta_settings(settings):
    settings.WHATSAPP_APP_SECRET = SECRET


def post(client, template, field, value, *, time=T0):
    value = {
        "message_template_id": 987654321,
        "message_template_name": template.name,
        "message_template_language": template.language,
        **value,
    }
    entry = {"id": template.waba_id, "changes": [{"field": field, "value": value}]}
    if time is not None:
        entry["time"] = time
    body = orjson.dumps({"object": "whatsapp_business_account", "entry": [entry]})
    response = client.post(
        URL, data=body, content_type="application/json", HTTP_X_HUB_SIGNATURE_256=meta_signature(body, SECRET)
    )
    assert response.status_code == 200, response.content
    template.refresh_from_db()
    return template


def status_update(client, template, event, *, time=T0, reason="NONE"):
    return post(client, template, "message_template_status_update", {"event": event, "reason": reason}, time=time)


@pytest.mark.parametrize(
    ("start", "event", "expected"),
    [
        ("PAUSED", "APPROVED", "APPROVED"),
        ("PAUSED", "REINSTATED", "APPROVED"),
        ("ARCHIVED", "UNARCHIVED", "APPROVED"),
        ("APPROVED", "FLAGGED", "APPROVED"),
        ("APPROVED", "PAUSED", "PAUSED"),
        ("APPROVED", "DISABLED", "DISABLED"),
        ("APPROVED", "REJECTED", "REJECTED"),
        ("APPROVED", "PENDING_DELETION", "PENDING_DELETION"),
        ("APPROVED", "LOCKED", "LOCKED"),
        ("APPROVED", "SOMETHING_NEW", "SOMETHING_NEW"),
    ],
)
def test_status_events_map_as_the_contract_says(client, template, start, event, expected):
    # Given a template in some status
    template.status = start
    template.save()
    # When Meta's event arrives, then the status is as docs/rules.md maps it and Meta's word and time are stored
    template = status_update(client, template, event)
    assert template.status == expected
    assert template.status_event == event
    assert template.status_event_time == T0


def test_flagged_keeps_the_template_sendable_and_stores_the_flag(client, template):
    template = status_update(client, template, "FLAGGED", reason="LOW_QUALITY")
    assert (template.status, template.status_event, template.status_reason) == ("APPROVED", "FLAGGED", "LOW_QUALITY")


def test_an_older_update_after_a_newer_one_changes_nothing(client, template):
    # Given Meta paused the template at T0 + 10
    status_update(client, template, "PAUSED", time=T0 + 10)
    # When an older APPROVED (T0) arrives late
    template = status_update(client, template, "APPROVED", time=T0)
    # Then it stays PAUSED, with the newer update's time
    assert (template.status, template.status_event, template.status_event_time) == ("PAUSED", "PAUSED", T0 + 10)
    # And a newer one applies
    template = status_update(client, template, "REINSTATED", time=T0 + 11)
    assert template.status == "APPROVED"


def test_updates_of_the_same_second_apply_in_arrival_order(client, template):
    status_update(client, template, "PAUSED", time=T0)
    template = status_update(client, template, "REINSTATED", time=T0)
    assert template.status == "APPROVED"


def test_an_update_without_a_readable_time_applies_and_keeps_the_stored_time(client, template):
    status_update(client, template, "PAUSED", time=T0)
    template = status_update(client, template, "APPROVED", time=None)
    assert (template.status, template.status_event_time) == ("APPROVED", T0)


@pytest.mark.parametrize("time", [-5, "abc", 10**16, 1.5e30, True])
def test_an_unreadable_or_absurd_time_is_treated_as_absent(client, template, time):
    template = status_update(client, template, "PAUSED", time=time)
    assert (template.status, template.status_event_time) == ("PAUSED", None)


def test_a_final_category_change_is_stored(client, template):
    template = post(
        client, template, "template_category_update", {"previous_category": "MARKETING", "new_category": "UTILITY"}
    )
    assert template.category == "UTILITY"


def test_an_advance_category_notice_changes_nothing(client, template):
    # Meta's impending-change notice: correct_category, new_category is the current one, no previous_category
    value = {"correct_category": "UTILITY", "new_category": "MARKETING", "category_update_timestamp": T0 + 86400}
    template = post(client, template, "template_category_update", value)
    assert template.category == "MARKETING"


def test_an_unknown_category_word_changes_nothing(client, template):
    value = {"previous_category": "MARKETING", "new_category": "SOMETHING"}
    assert post(client, template, "template_category_update", value).category == "MARKETING"


@pytest.mark.parametrize("quality", ["GREEN", "YELLOW", "RED", "UNKNOWN"])
def test_quality_updates_are_stored(client, template, quality):
    value = {"previous_quality_score": "UNKNOWN", "new_quality_score": quality}
    assert post(client, template, "message_template_quality_update", value).quality == quality


def test_an_unknown_quality_word_or_template_changes_nothing(client, template):
    assert post(client, template, "message_template_quality_update", {"new_quality_score": "PURPLE"}).quality == ""
    value = {"new_quality_score": "RED", "message_template_name": "nobody", "message_template_id": 1}
    assert post(client, template, "message_template_quality_update", value).quality == ""


def test_create_template_takes_a_category_and_refuses_others(channel):
    out = StringIO()
    call_command(
        "create_template", "--channel", channel.id, "--name", "otp_v1", "--language", "en", "--body", "Code {{1}}",
        "--category", "authentication", stdout=out,
    )  # fmt: skip
    assert Template.objects.get(pk=out.getvalue().strip().splitlines()[-1]).category == "AUTHENTICATION"
    with pytest.raises(CommandError, match="category"):
        call_command(
            "create_template", "--channel", channel.id, "--name", "x_v1", "--language", "en", "--body", "Hi",
            "--category", "PROMO", stdout=StringIO(),
        )  # fmt: skip
    assert not Template.objects.filter(name="x_v1").exists()


def test_create_template_defaults_to_marketing(channel):
    out = StringIO()
    call_command(
        "create_template", "--channel", channel.id, "--name", "promo_v1", "--language", "es", "--body", "Hola",
        stdout=out,
    )  # fmt: skip
    assert Template.objects.get(pk=out.getvalue().strip().splitlines()[-1]).category == "MARKETING"


@pytest.mark.parametrize(("flag", "expected"), [(["--marketing-messages"], True), ([], False)])
def test_create_channel_marks_marketing_messages_onboarding(db, flag, expected):
    out = StringIO()
    call_command(
        "create_channel", "--org", "Acme", "--phone-number-id", "100000000000077", "--waba-id", "200000000000077",
        "--access-token", "EAAG-x", *flag, stdout=out,
    )  # fmt: skip
    channel = Channel.objects.get(pk=out.getvalue().strip().splitlines()[-1])
    assert channel.marketing_messages is expected
