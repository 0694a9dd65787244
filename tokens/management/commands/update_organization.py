from django.core.management.base import BaseCommand, CommandError

from tokens.limits import InvalidLimit, limit_choices, limit_name, limit_parse
from tokens.models import Organization
from tokens.services import organization_messaging_limit_set


class Command(BaseCommand):
    help = "Changes an organization's settings (docs/operations.md); prints the organization's id last."

    def add_arguments(self, parser):
        parser.add_argument("--org", required=True, help="organization name (it must exist)")
        parser.add_argument(
            "--messaging-limit",
            default=None,
            help="the business portfolio's messaging limit: 250, 2000, 10000, 100000, unlimited, or a tier name "
            "(TIER_250, TIER_2K, TIER_10K, TIER_100K, TIER_UNLIMITED); sends waiting for it are woken at once",
        )

    def handle(self, *args, **options):
        raw = options.get("messaging_limit")
        # Everything is read before anything is written: a bad value changes nothing.
        try:
            # Blank is no value (the admin's empty field is unlimited; here a person writes "unlimited").
            limit = limit_parse(raw if raw is None or raw.strip() else "blank") if raw is not None else None
        except InvalidLimit:
            raise CommandError(f"--messaging-limit must be {limit_choices()}, not {raw!r}.") from None
        organization = Organization.objects.filter(name=(options["org"] or "").strip()).first()
        if organization is None:
            raise CommandError(f"No organization is called {options['org']!r}.")
        if raw is not None:
            changed = organization_messaging_limit_set(organization=organization, limit=limit)
            state = "set to" if changed else "already"
            self.stdout.write(f"Organization {organization.name!r}: messaging limit {state} {limit_name(limit)}:")
        else:
            self.stdout.write(f"Organization {organization.name!r}: nothing to change:")
        self.stdout.write(str(organization.id))
