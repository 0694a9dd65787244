from django.core.management.base import BaseCommand, CommandError

from broadcasts.pricing import rate_card_load
from broadcasts.rate_card_csv import CSV_COLUMNS, IN_WINDOW_COLUMN, RateCardError


class Command(BaseCommand):
    help = (
        f"Loads Meta's per-message prices from a CSV file (columns {','.join(CSV_COLUMNS)}, optionally "
        f"{IN_WINDOW_COLUMN}: the price inside an open customer-service window; one currency per card). The new card "
        "replaces the one in force; older cards are kept for history. All or nothing: a bad row is an error naming "
        "its line. Prints the number of rows loaded last."
    )

    def add_arguments(self, parser):
        parser.add_argument("--file", required=True, help="path of the CSV rate card (UTF-8)")

    def handle(self, *args, **options):
        path = options["file"]
        try:
            with open(path, encoding="utf-8-sig", newline="") as handle:
                text = handle.read()
        except (OSError, UnicodeDecodeError) as exc:
            raise CommandError(f"{path}: cannot read the file: {exc}") from exc
        try:
            card = rate_card_load(text=text)
        except RateCardError as exc:
            raise CommandError(f"{path}: {exc}; nothing was loaded") from exc
        count = card.prices.count()
        self.stdout.write(f"Rate card {card.id} in force ({card.currency}) from {card.loaded_at.isoformat()}:")
        self.stdout.write(str(count))
