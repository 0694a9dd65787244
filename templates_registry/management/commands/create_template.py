from django.core.management.base import BaseCommand, CommandError

from core.errors import ApplicationError
from templates_registry.models import Template
from templates_registry.selectors import channel_find
from templates_registry.services import template_register


class Command(BaseCommand):
    help = (
        "Registers a text template by hand for a channel's WhatsApp Business account; its variables are "
        "the {{...}} placeholders of header and body. Prints the template id last."
    )

    def add_arguments(self, parser):
        parser.add_argument("--channel", required=True, help="channel id (or its phone_number_id)")
        parser.add_argument("--name", required=True, help="template name, e.g. welcome_v2")
        parser.add_argument("--language", required=True, help="language code, e.g. es or en_US")
        parser.add_argument("--body", required=True, help='body text, e.g. "Hola {{nombre}}, tu saldo es {{monto}}"')
        parser.add_argument("--header", default=None, help="optional TEXT header")
        parser.add_argument("--status", default=Template.Status.APPROVED, help="APPROVED (default), PENDING, ...")
        parser.add_argument(
            "--category", default=Template.Category.MARKETING, help="MARKETING (default), UTILITY or AUTHENTICATION"
        )

    def handle(self, *args, **options):
        channel = channel_find(ref=options["channel"])
        if channel is None:
            raise CommandError(f"No channel with id or phone_number_id {options['channel']!r}.")
        try:
            template, created = template_register(
                channel=channel,
                name=options["name"],
                language=options["language"],
                body=options["body"],
                header=options["header"],
                status=options["status"],
                category=options["category"],
            )
        except ApplicationError as exc:
            raise CommandError(exc.message) from exc
        variables = ", ".join(template.variables) or "none"
        self.stdout.write(
            f"{'Created' if created else 'Updated'} template {template.name} [{template.language}] "
            f"{template.status}, {template.parameter_format} variables: {variables}"
        )
        self.stdout.write(str(template.pk))
