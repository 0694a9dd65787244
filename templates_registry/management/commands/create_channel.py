from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from core.errors import ApplicationError
from templates_registry.services import channel_create
from tokens.services import organization_get_or_create


class Command(BaseCommand):
    help = "Registers a WhatsApp channel (creating the organization when missing); prints the channel id last."

    def add_arguments(self, parser):
        parser.add_argument("--org", required=True, help="organization name (created when it does not exist)")
        parser.add_argument("--phone-number-id", required=True, help="Meta's phone number id")
        parser.add_argument("--waba-id", required=True, help="Meta's WhatsApp Business account id")
        parser.add_argument("--access-token", required=True, help="Graph API access token of the number")
        parser.add_argument("--max-mps", type=int, default=80, help="throughput cap, messages per second (1-1000)")
        parser.add_argument("--name", default="", help="a label for the admin")
        parser.add_argument(
            "--marketing-messages",
            action="store_true",
            help="the number is onboarded to Meta's Marketing Messages API (MARKETING templates go there)",
        )

    def handle(self, *args, **options):
        try:
            # One transaction: a refused channel leaves no new organization behind.
            with transaction.atomic():
                organization, created = organization_get_or_create(name=options["org"])
                channel = channel_create(
                    organization=organization,
                    phone_number_id=options["phone_number_id"].strip(),
                    waba_id=options["waba_id"].strip(),
                    access_token=options["access_token"],
                    max_mps=options["max_mps"],
                    name=options["name"],
                    marketing_messages=options["marketing_messages"],
                )
        except ApplicationError as exc:
            raise CommandError(exc.message) from exc
        verb = "Created" if created else "Using"
        self.stdout.write(f"{verb} organization {organization.name!r}; channel {channel.phone_number_id} created:")
        self.stdout.write(channel.id)
