from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from core.errors import ApplicationError
from templates_registry.services import channel_create
from tokens.limits import InvalidLimit, limit_choices, limit_parse
from tokens.services import organization_get_or_create, organization_messaging_limit_set


def _messaging_limit(raw: str | None) -> int | None:
    """--messaging-limit: one of Meta's tiers, by number or name, or "unlimited" (docs/operations.md)."""
    try:
        return limit_parse(raw if raw is None or raw.strip() else "blank")  # blank is no value
    except InvalidLimit:
        raise CommandError(f"--messaging-limit must be {limit_choices()}, not {raw!r}.") from None


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
            "--messaging-limit",
            default=None,
            help="the organization's messaging limit: 250, 2000, 10000, 100000, unlimited or a tier name such as "
            "TIER_2K (default unlimited)",
        )
        parser.add_argument(
            "--marketing-messages",
            action="store_true",
            help="the number is onboarded to Meta's Marketing Messages API (MARKETING templates go there)",
        )

    def handle(self, *args, **options):
        limit = _messaging_limit(options.get("messaging_limit"))
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
                if options.get("messaging_limit") is not None:
                    organization_messaging_limit_set(organization=organization, limit=limit)
        except ApplicationError as exc:
            raise CommandError(exc.message) from exc
        verb = "Created" if created else "Using"
        self.stdout.write(f"{verb} organization {organization.name!r}; channel {channel.phone_number_id} created:")
        self.stdout.write(channel.id)
