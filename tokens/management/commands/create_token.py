from datetime import UTC, datetime

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.utils import timezone

from core.errors import ApplicationError
from tokens.scopes import KNOWN_SCOPES
from tokens.services import organization_get_or_create, scopes_parse, token_create


def parse_expires_at(value: str | None) -> datetime | None:
    """ISO 8601; a value without offset is read as UTC."""
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError as exc:
        raise CommandError(f"--expires-at {value!r} is not an ISO 8601 date-time (e.g. 2027-01-31T00:00:00Z).") from exc
    return parsed.replace(tzinfo=UTC) if timezone.is_naive(parsed) else parsed


class Command(BaseCommand):
    help = "Issues an API token for an organization; prints the token (shown once, only its hash is stored) last."

    def add_arguments(self, parser):
        parser.add_argument("--org", required=True, help="organization name")
        parser.add_argument("--scopes", required=True, help=f"comma-separated, of: {', '.join(KNOWN_SCOPES)}")
        parser.add_argument("--name", default="", help="a label shown in the admin")
        parser.add_argument("--expires-at", default=None, help="ISO 8601 expiry (UTC when no offset is given)")

    def handle(self, *args, **options):
        expires_at = parse_expires_at(options["expires_at"])
        try:
            scopes = scopes_parse(options["scopes"])
            with transaction.atomic():
                organization, created = organization_get_or_create(name=options["org"])
                issued = token_create(
                    organization=organization, scopes=scopes, name=options["name"], expires_at=expires_at
                )
        except ApplicationError as exc:
            raise CommandError(exc.message) from exc
        if created:
            self.stderr.write(f"Note: organization {organization.name!r} did not exist; it was created.")
        if expires_at is not None and expires_at <= timezone.now():
            self.stderr.write(
                self.style.WARNING(
                    f"Warning: --expires-at {expires_at.isoformat()} is in the past; the token is expired."
                )
            )
        self.stdout.write(
            f"Token {issued.token.prefix} for {organization.name!r}, scopes {','.join(scopes)} "
            "(shown once, store it now):"
        )
        self.stdout.write(issued.secret)
