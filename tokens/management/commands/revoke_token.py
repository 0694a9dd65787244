from django.core.management.base import BaseCommand, CommandError

from core.errors import ApplicationError
from tokens.models import AccessToken
from tokens.services import token_revoke


class Command(BaseCommand):
    help = (
        "Revokes an API token at once, given whole or by the 16-character prefix the admin shows "
        "(kbai_pk_ and 8 more). Prints the token's prefix last."
    )

    def add_arguments(self, parser):
        parser.add_argument("token_or_prefix", help=f"the token, or its first {AccessToken.PREFIX_LENGTH} characters")

    def handle(self, *args, **options):
        value = options["token_or_prefix"]
        try:
            token = token_revoke(token_or_prefix=value)
        except ApplicationError as exc:
            raise CommandError(exc.message) from exc
        self.stdout.write(
            f"Revoked token {token.prefix} of {token.organization.name!r} at {token.revoked_at.isoformat()}:"
        )
        self.stdout.write(token.prefix)
