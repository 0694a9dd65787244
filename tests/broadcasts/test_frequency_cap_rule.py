"""The marketing frequency cap's rule on PostgreSQL (broadcasts/rules/frequency_cap.py): what counts, the order of
a batch, and two batches racing for an address's last slot under the advisory locks; and the dry run's count."""

import threading
from datetime import timedelta

import pytest
from django.db import connection, connections, transaction
from django.utils import timezone

from broadcasts import pricing
from broadcasts.delivery.claims import sends_mark_posting
from broadcasts.models import Send
from broadcasts.rules.frequency_cap import lock_key, over_cap, preview_capped, sends_cap
from templates_registry.models import Template
from tests.broadcasts.test_api_create import post
from tests.delivery_support import broadcast_make
from tokens.frequency_cap import FrequencyCap

X, Y, Z = "+573001110001", "+573001110002", "+573001110003"
CAP = FrequencyCap(1, 7)


def running(channel, template, recipients):
    return broadcast_make(channel=channel, template=template, recipients=recipients, status="IN_PROGRESS")


def sent(broadcast, *, days_ago: float) -> None:
    Send.objects.filter(broadcast=broadcast).update(status="SENT", sent_at=timezone.now() - timedelta(days=days_ago))


def marked(broadcast) -> list[tuple[int, str]]:
    ids = list(Send.objects.filter(broadcast=broadcast).order_by("id").values_list("id", flat=True))
    sends_mark_posting(broadcast_id=broadcast.id, ids=ids)
    return list(Send.objects.filter(id__in=ids).order_by("id").values_list("id", "to"))


def test_a_batch_keeps_the_first_sends_of_an_address_within_its_slots():
    counted = {X: 1}
    sends = [(1, X), (2, Y), (3, Y), (4, Z), (5, Y)]
    assert over_cap(cap=FrequencyCap(2, 7), counted=counted, sends=sends) == {5}
    assert over_cap(cap=CAP, counted=counted, sends=sends) == {1, 3, 5}


@pytest.mark.django_db(transaction=True)
def test_only_marketing_sends_of_the_organization_within_the_days_count(org, other_org, channel, template):
    # Given X sent by MARKETING 8 days ago, Y sent by MARKETING 6 days ago, Z sent by UTILITY today, and another
    # organization's MARKETING send to Z today
    sent(running(channel, template, [X]), days_ago=8)
    sent(running(channel, template, [Y]), days_ago=6)
    utility = Template.objects.create(
        waba_id=template.waba_id, name="order_update", language="es", status="APPROVED", category="UTILITY"
    )
    sent(running(channel, utility, [Z]), days_ago=0)
    elsewhere = channel.__class__.objects.create(
        organization=other_org, phone_number_id="100000000000009", waba_id="200000000000009", access_token="T"
    )
    foreign = Template.objects.create(
        waba_id=elsewhere.waba_id, name="welcome_v2", language="es", status="APPROVED", category="MARKETING"
    )
    sent(running(elsewhere, foreign, [Z]), days_ago=0)

    # When a batch to X, Y and Z is about to be posted under a cap of 1/7
    batch = marked(running(channel, template, [X, Y, Z]))
    capped = sends_cap(organization_id=org.id, cap=CAP, sends=batch, now=timezone.now())

    # Then only Y is capped, and its posting mark is taken back (the others keep theirs)
    assert capped == {batch[1][0]}
    marks = dict(Send.objects.filter(id__in=[i for i, _ in batch]).values_list("to", "posting_at"))
    assert marks[Y] is None and marks[X] is not None and marks[Z] is not None


@pytest.mark.django_db(transaction=True)
def test_two_batches_racing_for_the_last_slot_let_exactly_one_go(org, channel, template):
    # Given two broadcasts' sends to X, both marked posting (neither has passed the gate yet)
    a = marked(running(channel, template, [X]))
    b = marked(running(channel, template, [X]))
    # and X's lock held elsewhere, so both gates wait on it and then run as close together as they can
    held, release = threading.Event(), threading.Event()

    def holder():
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [lock_key(org.id, X)])
            held.set()
            release.wait(10)
        connection.close()

    results = {}

    def gate(name, batch):
        try:
            results[name] = sends_cap(organization_id=org.id, cap=CAP, sends=batch, now=timezone.now())
        finally:
            connection.close()

    lock_thread = threading.Thread(target=holder)
    lock_thread.start()
    assert held.wait(10)
    gates = [threading.Thread(target=gate, args=(name, batch)) for name, batch in (("a", a), ("b", b))]
    for thread in gates:
        thread.start()
    release.set()
    for thread in [lock_thread, *gates]:
        thread.join(20)

    # Then exactly one is capped: the second to take the lock saw the first's verdict
    assert sorted(len(capped) for capped in results.values()) == [0, 1]
    connections.close_all()


@pytest.mark.django_db(transaction=True)
def test_the_dry_run_counts_the_capped_recipients_apart_at_no_cost(org, channel, template, api):
    # Given a cap of 1/7, X and Y sent to 2 days ago, and a rate card
    org.marketing_frequency_cap, org.marketing_frequency_days = 1, 7
    org.save()
    sent(running(channel, template, [X, Y]), days_ago=2)
    pricing.rate_card_load(text="country,category,price,currency\n*,MARKETING,0.0600,USD\n")

    # When a dry run goes to X, Y, Z and Z again
    body = {
        "template_name": template.name,
        "language": template.language,
        "channel_id": channel.id,
        "dry_run": True,
        "recipients": [{"to": n, "variables": {"nombre": "A", "monto": "1"}} for n in (X, Y, Z, Z)],
    }
    answer = post(api, body)

    # Then X, Y and Z's second listing would be capped: counted apart, priced at nothing
    assert answer.status_code == 200, answer.content
    shown = answer.json()
    assert shown["frequency_capped"] == 3 and shown["estimate"]["frequency_capped"] == 3
    assert shown["estimate"]["total"] == "0.06" and shown["estimate"]["by_country"]["CO"]["recipients"] == 1
    assert preview_capped(organization_id=org.id, category="UTILITY", addresses=[X], now=timezone.now()) == set()

    # And without a cap nothing is capped
    org.marketing_frequency_cap = org.marketing_frequency_days = None
    org.save()
    assert post(api, body).json()["estimate"]["frequency_capped"] == 0
