from django.core.management.base import BaseCommand, CommandError

from core.errors import ApplicationError
from templates_registry.selectors import channel_find
from templates_registry.services import templates_sync


class Command(BaseCommand):
    help = (
        "Reads the channel's templates from the Graph API (GET {WHATSAPP_GRAPH_URL}/{waba_id}/message_templates, "
        "every page) and upserts them. Prints the number synced last."
    )

    def add_arguments(self, parser):
        parser.add_argument("--channel", required=True, help="channel id (or its phone_number_id)")

    def handle(self, *args, **options):
        channel = channel_find(ref=options["channel"])
        if channel is None:
            raise CommandError(f"No channel with id or phone_number_id {options['channel']!r}.")
        try:
            count = templates_sync(channel=channel)
        except ApplicationError as exc:
            raise CommandError(exc.message) from exc
        self.stdout.write(f"Synced templates of WhatsApp Business account {channel.waba_id}:")
        self.stdout.write(str(count))
