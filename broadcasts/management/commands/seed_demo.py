"""The demo data of `make run`: idempotent, so a second run reuses everything but issues a new token.

It lives in broadcasts (not templates_registry) because it also loads a demo rate card (broadcasts.pricing), so the
dry run and the broadcasts' costs show numbers."""

import os
import secrets
import shlex

import orjson
from django.contrib.auth import get_user_model, password_validation
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from broadcasts.pricing import rate_card_current, rate_card_load
from core.errors import ApplicationError
from templates_registry.models import Channel, Template
from templates_registry.services import channel_create, template_register
from tokens.scopes import KNOWN_SCOPES
from tokens.services import organization_get_or_create, token_create

DEMO_ORG = "Demo"
DEMO_PHONE_NUMBER_ID = "100000000000001"
DEMO_WABA_ID = "200000000000001"
DEMO_ACCESS_TOKEN = "demo-graph-access-token"  # the sandbox accepts any token
DEMO_TEMPLATE = ("welcome_v2", "es", "Hola {{nombre}}, tu saldo es {{monto}}")
DEMO_ADMIN = "admin"
# Made-up prices in Meta's shape (per delivered message, by country and category; `*` for every other country):
# the countries of the printed curl (MX, ES) and of the demo load (CO), and the US.
DEMO_RATE_CARD = """country,category,price,currency
MX,MARKETING,0.0305,USD
MX,UTILITY,0.0085,USD
MX,AUTHENTICATION,0.0085,USD
ES,MARKETING,0.0615,USD
ES,UTILITY,0.0200,USD
ES,AUTHENTICATION,0.0200,USD
CO,MARKETING,0.0125,USD
CO,UTILITY,0.0008,USD
CO,AUTHENTICATION,0.0008,USD
US,MARKETING,0.0250,USD
US,UTILITY,0.0040,USD
US,AUTHENTICATION,0.0135,USD
*,MARKETING,0.0600,USD
*,UTILITY,0.0100,USD
*,AUTHENTICATION,0.0300,USD
"""


class Command(BaseCommand):
    help = (
        "Creates the demo organization, channel, template, admin and rate card (reused when present; a card loaded "
        "with load_rate_card stays in force) and a fresh token."
    )

    def add_arguments(self, parser):
        parser.add_argument("--base-url", default=None, help="where the API listens, for the printed curl commands")
        parser.add_argument(
            "--admin-password",
            default=os.environ.get("DEMO_ADMIN_PASSWORD") or None,
            help="password of the demo admin (default: a new random one each run, printed)",
        )

    def handle(self, *args, **options):
        base_url = (options["base_url"] or f"http://127.0.0.1:{os.environ.get('PORT', '8000')}").rstrip("/")
        password = options["admin_password"] or secrets.token_urlsafe(12)
        try:  # the admin's password rules hold for the demo's admin too (a random one passes them)
            password_validation.validate_password(password, user=get_user_model()(username=DEMO_ADMIN))
        except ValidationError as exc:
            raise CommandError(f"--admin-password / DEMO_ADMIN_PASSWORD: {' '.join(exc.messages)}") from exc
        try:
            with transaction.atomic():
                organization, _ = organization_get_or_create(name=DEMO_ORG)
                channel = Channel.objects.filter(phone_number_id=DEMO_PHONE_NUMBER_ID).first()
                if channel is None:
                    channel = channel_create(
                        organization=organization,
                        phone_number_id=DEMO_PHONE_NUMBER_ID,
                        waba_id=DEMO_WABA_ID,
                        access_token=DEMO_ACCESS_TOKEN,
                        max_mps=80,
                        name="Demo sandbox number",
                    )
                elif channel.organization_id != organization.pk:
                    raise CommandError(
                        f"phone_number_id {DEMO_PHONE_NUMBER_ID} belongs to organization {channel.organization.name!r}."
                    )
                name, language, body = DEMO_TEMPLATE
                template, _ = template_register(
                    channel=channel, name=name, language=language, body=body, status=Template.Status.APPROVED
                )
                # The demo card only where no card is in force: a card loaded by hand is never replaced.
                card = rate_card_current() or rate_card_load(text=DEMO_RATE_CARD)
                issued = token_create(organization=organization, scopes=list(KNOWN_SCOPES), name="make run demo")
                admin = self._admin(password)
        except ApplicationError as exc:
            raise CommandError(exc.message) from exc

        body = {
            "template_name": template.name,
            "language": template.language,
            "channel_id": channel.id,
            "campaign_name": "demo",
            "recipients": [
                {"to": "+525512345678", "variables": {"nombre": "Ana", "monto": "$120.50"}, "meta_data": {"id": 1}},
                {"to": "+34612345678", "variables": {"nombre": "Luis", "monto": "€80"}, "meta_data": {"id": 2}},
            ],
        }
        auth = shlex.quote(f"Authorization: Bearer {issued.secret}")
        out = self.stdout.write
        out("")
        out("=== Demo ready ===")
        out(f"Organization : {organization.name}")
        out(f"Channel      : {channel.id} (phone_number_id {channel.phone_number_id}, max_mps {channel.max_mps})")
        out(f"Template     : {template.name} [{template.language}] {template.status}, variables {template.variables}")
        out(f"Rate card    : {card.id} ({card.currency}, {card.prices.count()} prices; load_rate_card replaces it)")
        out(f"Admin        : {base_url}/admin/  user {admin.get_username()}  password {password}")
        out(f"API docs     : {base_url}/v1/docs")
        out("")
        out("Send a broadcast:")
        out(
            f"  curl -sS -X POST {base_url}/v1/messages/bulk -H {auth} -H 'Content-Type: application/json' "
            f"-d {shlex.quote(orjson.dumps(body).decode())}"
        )
        out("Then follow it (use the broadcast_id printed above):")
        out(f"  curl -sS {base_url}/v1/messages/bulk -H {auth}")
        out(f"  curl -sS {base_url}/v1/messages/bulk/BROADCAST_ID/recipients -H {auth}")
        out("")
        out("API token (all scopes, shown once):")
        out(issued.secret)

    def _admin(self, password: str):
        User = get_user_model()
        admin, _ = User.objects.get_or_create(username=DEMO_ADMIN, defaults={"email": "admin@example.com"})
        admin.is_staff = True
        admin.is_superuser = True
        admin.is_active = True
        admin.set_password(password)
        admin.save()
        return admin
