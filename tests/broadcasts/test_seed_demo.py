"""seed_demo (`make run`): idempotent, a new token each run, and a demo rate card unless one is in force."""

from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command

from broadcasts.models import RateCard
from broadcasts.pricing import rate_card_load
from templates_registry.models import Channel, Template
from tokens.models import Organization
from tokens.services import token_authenticate

pytestmark = pytest.mark.django_db


def run_all(*args: str) -> str:
    out = StringIO()
    call_command(*args, stdout=out, stderr=StringIO())
    return out.getvalue()


def test_seed_demo_is_idempotent_and_issues_a_new_token_each_run(db):
    # when the demo seed runs twice
    first_out = run_all("seed_demo", "--admin-password", "pw-one-123")
    second_out = run_all("seed_demo")
    # then one organization, channel, template, admin and rate card, but two working tokens
    assert Organization.objects.filter(name="Demo").count() == 1
    channel = Channel.objects.get()
    assert (channel.phone_number_id, channel.waba_id, channel.max_mps) == ("100000000000001", "200000000000001", 80)
    template = Template.objects.get()
    assert (template.name, template.language, template.status) == ("welcome_v2", "es", "APPROVED")
    assert template.variables == ["nombre", "monto"]
    first, second = first_out.strip().splitlines()[-1], second_out.strip().splitlines()[-1]
    assert first != second
    assert token_authenticate(raw=first) is not None and token_authenticate(raw=second) is not None
    admin = get_user_model().objects.get(username="admin")
    assert admin.is_superuser and admin.is_staff
    # and the printed curl is ready to paste: it carries the token and the channel id
    assert f"Bearer {second}" in second_out and channel.id in second_out and "/v1/messages/bulk" in second_out


def test_seed_demo_loads_a_rate_card_with_every_category_and_a_catch_all_row(db):
    run_all("seed_demo")
    card = RateCard.objects.get()
    prices = {(p.country, p.category) for p in card.prices.all()}
    for country in ("MX", "ES", "*"):
        assert {(country, c) for c in ("MARKETING", "UTILITY", "AUTHENTICATION")} <= prices
    assert card.currency == "USD"


def test_seed_demo_keeps_a_rate_card_loaded_by_hand(db):
    mine = rate_card_load(text="country,category,price,currency\n*,MARKETING,0.5,EUR\n")
    out = run_all("seed_demo")
    assert list(RateCard.objects.all()) == [mine]
    assert f"Rate card    : {mine.id} (EUR" in out


def test_seed_demo_refuses_a_weak_admin_password_and_generates_a_compliant_one(db):
    from django.contrib.auth import password_validation
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="too common"):
        run_all("seed_demo", "--admin-password", "password123")
    assert not get_user_model().objects.exists()
    out = run_all("seed_demo")
    password = out.split("password ", 1)[1].split()[0]
    admin = get_user_model().objects.get(username="admin")
    assert admin.check_password(password)
    password_validation.validate_password(password, user=admin)
