"""Limits on what a customer's endpoints may cost or reach: WEBHOOK_ENDPOINTS_MAX per organization (409, race-safe,
the admin too) and the address rules for IPv6 forms that carry an IPv4 address (judged by it, refused generically)."""

import socket
import threading

import pytest
from django.db import connections, transaction

from events import endpoints
from events.models import WebhookEndpoint

URL = "/v1/webhooks"


# --- WEBHOOK_ENDPOINTS_MAX ---------------------------------------------------------------------------------------


def test_one_endpoint_more_than_the_cap_is_a_409_and_nothing_stored(api, org, allow_private, settings):
    settings.WEBHOOK_ENDPOINTS_MAX = 3
    for i in range(3):
        assert api.post(URL, {"url": f"http://127.0.0.1:9/{i}"}, format="json").status_code == 201
    response = api.post(URL, {"url": "http://127.0.0.1:9/one-more"}, format="json")
    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "conflict" and error["details"] == {"limit": 3}
    assert WebhookEndpoint.objects.count() == 3


def test_the_cap_is_ten_by_default_and_counts_neither_deleted_nor_other_organizations_endpoints(
    api, org, other_org, allow_private
):
    for i in range(10):
        endpoints.endpoint_create(organization=org, url=f"http://127.0.0.1:9/{i}")
    endpoints.endpoint_create(organization=other_org, url="http://127.0.0.1:9/theirs")
    assert api.post(URL, {"url": "http://127.0.0.1:9/11"}, format="json").status_code == 409
    endpoints.endpoint_delete(organization=org, endpoint_id=WebhookEndpoint.objects.filter(organization=org).first().id)
    assert api.post(URL, {"url": "http://127.0.0.1:9/11"}, format="json").status_code == 201
    assert WebhookEndpoint.objects.filter(organization=org, deleted_at__isnull=True).count() == 10


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_creations_cannot_pass_the_cap(org, allow_private, settings):
    settings.WEBHOOK_ENDPOINTS_MAX = 2
    endpoints.endpoint_create(organization=org, url="http://127.0.0.1:9/0")
    # Given a creation whose transaction has not committed yet (it saw room for one more)
    second_started, second_done = threading.Event(), threading.Event()
    outcome: list = []

    def second() -> None:
        try:
            second_started.set()
            endpoints.endpoint_create(organization=org, url="http://127.0.0.1:9/b")
            outcome.append("created")
        except Exception as exc:  # noqa: BLE001
            outcome.append(exc)
        finally:
            connections.close_all()
            second_done.set()

    with transaction.atomic():
        endpoints.endpoint_create(organization=org, url="http://127.0.0.1:9/a")
        thread = threading.Thread(target=second)
        thread.start()
        second_started.wait()
        # When another creation runs meanwhile, then it waits for the first to end instead of counting beside it
        assert not second_done.wait(1.0)
    thread.join(10)
    # And once the first committed, it sees the cap reached
    [result] = outcome
    assert getattr(result, "code", None) == "conflict", result
    assert WebhookEndpoint.objects.filter(organization=org).count() == 2


def test_the_admin_add_form_respects_the_cap(admin_client, org, allow_private, settings):
    settings.WEBHOOK_ENDPOINTS_MAX = 1
    endpoints.endpoint_create(organization=org, url="http://127.0.0.1:9/0")
    response = admin_client.post(
        "/admin/events/webhookendpoint/add/", {"organization": org.id, "url": "http://127.0.0.1:9/x", "events": "[]"}
    )
    assert response.status_code == 200  # the form again, with the error
    assert "the most allowed" in response.content.decode()
    assert WebhookEndpoint.objects.count() == 1


# --- IPv6 forms carrying an IPv4 address -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "address",
    [
        "64:ff9b::7f00:1",  # NAT64 well-known prefix, 127.0.0.1
        "64:ff9b::a00:1",  # NAT64, 10.0.0.1
        "64:ff9b:1::a9fe:a9fe",  # local-use NAT64 (/96 reading), 169.254.169.254
        "64:ff9b:1:c0a8:1:100::",  # local-use NAT64 (/48 reading), 192.168.1.1
        "2002:7f00:1::1",  # 6to4, 127.0.0.1
        "2002:a9fe:a9fe::",  # 6to4, 169.254.169.254
        "::7f00:1",  # IPv4-compatible, 127.0.0.1
        "::c0a8:101",  # IPv4-compatible, 192.168.1.1
        "::ffff:10.0.0.1",  # IPv4-mapped
        "::ffff:7f00:1",  # IPv4-mapped, hex form
    ],
)
def test_ipv6_forms_of_a_private_ipv4_are_refused_without_naming_the_address(api, address):
    response = api.post(URL, {"url": f"http://[{address}]:8080/x"}, format="json")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    [message] = error["details"]["url"]
    assert message == endpoints.ADDRESS_REFUSED
    assert not WebhookEndpoint.objects.exists()


@pytest.mark.parametrize("address", ["64:ff9b::808:808", "2002:808:808::1", "::808:808", "::ffff:8.8.8.8"])
def test_ipv6_forms_of_a_public_ipv4_are_judged_by_it(address, settings):
    settings.WEBHOOKS_ALLOW_PRIVATE = False
    assert endpoints.addresses_refusal(host=address, addresses=[address]) is None


def test_a_local_use_nat64_address_must_be_public_in_every_reading_of_its_prefix(settings):
    settings.WEBHOOKS_ALLOW_PRIVATE = False
    # 8.8.8.8 read as a /96 prefix, 0.0.0.0 read as a /48 one: the operator's prefix length is unknown, so refused
    assert endpoints.addresses_refusal(host="h", addresses=["64:ff9b:1::808:808"]) == endpoints.ADDRESS_REFUSED
    assert endpoints.addresses_refusal(host="h", addresses=["64:ff9b:1:808:8:808:808:808"]) is None


def test_a_name_resolving_to_a_nat64_private_address_is_refused_without_the_address(api, monkeypatch):
    real = socket.getaddrinfo

    def resolve(host, port, *args, **kwargs):
        if host == "hooks.customer.test":
            return [(socket.AF_INET6, socket.SOCK_STREAM, 6, "", ("64:ff9b::a00:5", port, 0, 0))]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    response = api.post(URL, {"url": "https://hooks.customer.test/x"}, format="json")
    assert response.status_code == 400
    text = response.content.decode()
    assert "64:ff9b" not in text and "10.0.0.5" not in text and "a00:5" not in text
    assert not WebhookEndpoint.objects.exists()
