from django.core.management.base import BaseCommand, CommandError

from tokens.frequency_cap import (
    CAP_HELP,
    InvalidFrequencyCap,
    frequency_cap_name,
    frequency_cap_parse,
    organization_frequency_cap_set,
)
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
        parser.add_argument(
            "--marketing-frequency-cap",
            default=None,
            metavar="N/DAYS|off",
            help=f"at most N MARKETING sends per number per DAYS days, or off: {CAP_HELP}",
        )

    def handle(self, *args, **options):
        raw = options.get("messaging_limit")
        # Everything is read before anything is written: a bad value changes nothing.
        try:
            # Blank is no value (the admin's empty field is unlimited; here a person writes "unlimited").
            limit = limit_parse(raw if raw is None or raw.strip() else "blank") if raw is not None else None
        except InvalidLimit:
            raise CommandError(f"--messaging-limit must be {limit_choices()}, not {raw!r}.") from None
        raw_cap = options.get("marketing_frequency_cap")
        try:
            # Only "off" turns it off here: an empty value is more likely a script's missing variable.
            cap = frequency_cap_parse(raw_cap, off_words=("off",)) if raw_cap is not None else None
        except InvalidFrequencyCap as exc:
            raise CommandError(f"--marketing-frequency-cap must be N/DAYS or off: {exc}") from None
        organization = Organization.objects.filter(name=(options["org"] or "").strip()).first()
        if organization is None:
            raise CommandError(f"No organization is called {options['org']!r}.")
        if raw is None and raw_cap is None:
            self.stdout.write(f"Organization {organization.name!r}: nothing to change:")
        if raw is not None:
            changed = organization_messaging_limit_set(organization=organization, limit=limit)
            state = "set to" if changed else "already"
            self.stdout.write(f"Organization {organization.name!r}: messaging limit {state} {limit_name(limit)}:")
        if raw_cap is not None:
            changed = organization_frequency_cap_set(organization=organization, cap=cap)
            state = "set to" if changed else "already"
            self.stdout.write(
                f"Organization {organization.name!r}: marketing frequency cap {state} {frequency_cap_name(cap)}:"
            )
        self.stdout.write(str(organization.id))
