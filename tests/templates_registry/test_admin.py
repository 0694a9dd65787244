"""Channel admin keeps the Graph access token write-only; the template admin is read-mostly."""

import pytest
from django.contrib.auth import get_user_model

from templates_registry.models import Channel, Template

pytestmark = pytest.mark.django_db
SECRET = "EAAG-test-channel-token"


@pytest.fixture
def admin_client(client):
    client.force_login(get_user_model().objects.create_superuser("root", "root@example.com", "pw-123456"))
    return client


def _channel_form(channel: Channel, **overrides) -> dict:
    data = {
        "organization": channel.organization_id,
        "name": "Main",
        "phone_number_id": channel.phone_number_id,
        "waba_id": channel.waba_id,
        "access_token": "",
        "max_mps": "80",
    }
    data.update(overrides)
    return data


def test_access_token_is_never_rendered_back(admin_client, channel):
    assert SECRET not in admin_client.get(f"/admin/templates_registry/channel/{channel.pk}/change/").content.decode()
    assert SECRET not in admin_client.get("/admin/templates_registry/channel/").content.decode()


def test_blank_access_token_on_change_keeps_the_old_one(admin_client, channel):
    url = f"/admin/templates_registry/channel/{channel.pk}/change/"
    assert admin_client.post(url, _channel_form(channel, max_mps="120")).status_code == 302
    channel.refresh_from_db()
    assert channel.access_token == SECRET and channel.max_mps == 120


def test_new_access_token_on_change_replaces_it(admin_client, channel):
    url = f"/admin/templates_registry/channel/{channel.pk}/change/"
    assert admin_client.post(url, _channel_form(channel, access_token="EAAG-rotated")).status_code == 302
    channel.refresh_from_db()
    assert channel.access_token == "EAAG-rotated"


def test_new_channel_requires_an_access_token(admin_client, org):
    data = {"organization": org.pk, "phone_number_id": "123", "waba_id": "456", "access_token": "", "max_mps": "80"}
    assert admin_client.post("/admin/templates_registry/channel/add/", data).status_code == 200
    assert not Channel.objects.exists()
    data["access_token"] = "EAAG-new"
    assert admin_client.post("/admin/templates_registry/channel/add/", data).status_code == 302
    assert Channel.objects.get().access_token == "EAAG-new"


def test_max_mps_above_1000_is_refused(admin_client, channel):
    url = f"/admin/templates_registry/channel/{channel.pk}/change/"
    assert admin_client.post(url, _channel_form(channel, max_mps="1001")).status_code == 200
    channel.refresh_from_db()
    assert channel.max_mps == 80


def test_template_list_filters_by_status_and_language(admin_client, template):
    Template.objects.create(waba_id=template.waba_id, name="other", language="en_US", status="REJECTED")
    page = admin_client.get("/admin/templates_registry/template/?status__exact=APPROVED").content.decode()
    assert "welcome_v2" in page and ">other<" not in page
    page = admin_client.get("/admin/templates_registry/template/?language__exact=en_US").content.decode()
    assert ">other<" in page and "welcome_v2" not in page


def test_template_status_is_read_only(admin_client, template):
    # Meta's verdict: no one marks a template APPROVED (or anything else) from the admin, not even a superuser
    assert admin_client.get("/admin/templates_registry/template/add/").status_code == 403
    url = f"/admin/templates_registry/template/{template.pk}/change/"
    page = admin_client.get(url)
    assert page.status_code == 200
    assert 'name="status"' not in page.content.decode() and 'name="_save"' not in page.content.decode()
    template.status = Template.Status.PENDING
    template.save(update_fields=["status"])
    response = admin_client.post(url, {"status": "APPROVED", "name": "renamed"})
    assert response.status_code == 403
    template.refresh_from_db()
    assert template.status == "PENDING" and template.name == "welcome_v2"


def test_sync_templates_action_reads_meta(admin_client, channel, fake_graph):
    response = admin_client.post(
        "/admin/templates_registry/channel/",
        {"action": "sync_templates", "_selected_action": [channel.pk]},
        follow=True,
    )
    assert "3 template(s) synced" in response.content.decode()
    assert Template.objects.filter(waba_id=channel.waba_id).count() == 3


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("phone_number_id", "123/../../me"),
        ("phone_number_id", "123?fields=access_token"),
        ("phone_number_id", "%2e%2e"),
        ("phone_number_id", "1" * 21),
        ("phone_number_id", "12 34"),
        ("waba_id", "2000/phone_numbers"),
        ("waba_id", "abc"),
        ("waba_id", "１２３"),  # noqa: RUF001 - fullwidth digits are not ASCII digits
        ("waba_id", ""),
    ],
)
def test_meta_ids_must_be_numeric_before_reaching_a_graph_url(admin_client, org, field, value):
    data = {
        "organization": org.id,
        "name": "New",
        "phone_number_id": "100000000000321",
        "waba_id": "200000000000321",
        "access_token": "EAAG-new-token",
        "max_mps": "80",
        field: value,
    }
    response = admin_client.post("/admin/templates_registry/channel/add/", data)
    assert response.status_code == 200  # the form again, with the field's error
    assert field in response.context["adminform"].form.errors
    assert not Channel.objects.filter(name="New").exists()


def test_numeric_meta_ids_are_accepted(admin_client, org):
    data = {
        "organization": org.id,
        "name": "New",
        "phone_number_id": "100000000000321",
        "waba_id": "200000000000321",
        "access_token": "EAAG-new-token",
        "max_mps": "80",
    }
    assert admin_client.post("/admin/templates_registry/channel/add/", data).status_code == 302
    assert Channel.objects.get(name="New").phone_number_id == "100000000000321"
