from datetime import timedelta

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import CommandError

from flashnotify.commands import ExamplesCommand
from notifications.services import deliveries_purge, retention_purge

EXAMPLES = """
examples:
  manage.py purge_deliveries                      # the daily retention purge, now (RETENTION_* settings)
  manage.py purge_deliveries --older-than 365
  manage.py purge_deliveries --older-than 90 --batch-size 5000

Deletes finished deliveries (never pending ones) in batches, each its own short transaction,
so it can run beside the workers and be stopped and rerun at any time. Without --older-than it
runs what the retention schedule runs once a day: deliveries older than RETENTION_DELIVERY_DAYS
and inbox messages older than RETENTION_INBOX_DAYS (0 keeps them forever), and compliance ledger
entries older than LEDGER_RETENTION_YEARS (at least 7).
"""


class Command(ExamplesCommand):
    help = "Delete deliveries older than DAYS, or apply the retention settings, in batches."
    examples = EXAMPLES

    def add_arguments(self, parser):
        parser.add_argument("--older-than", type=int, metavar="DAYS",
                            help="Deliveries only, older than DAYS (default: the retention settings).")
        parser.add_argument("--batch-size", type=int, default=2000)

    def handle(self, *args, **options):
        if options["older_than"] is not None and options["older_than"] < 1:
            raise CommandError("--older-than must be a number of days of at least 1.")
        if options["batch_size"] < 1:
            raise CommandError("--batch-size must be at least 1.")
        if options["older_than"] is None:
            try:
                done = retention_purge(batch_size=options["batch_size"])
            except ImproperlyConfigured as exc:
                raise CommandError(f"{exc} Nothing was deleted.")
            self.stdout.write(self.style.SUCCESS(
                f"Deleted {done['deliveries']} deliveries and {done['inbox_messages']} inbox messages "
                "past their retention."))
            self.stdout.write(f"Deleted {done['ledger_entries']} compliance ledger entries older than "
                              f"LEDGER_RETENTION_YEARS.")
            return
        deleted = deliveries_purge(older_than=timedelta(days=options["older_than"]),
                                   batch_size=options["batch_size"],
                                   progress=lambda n: self.stdout.write(f"deleted {n}…"))
        self.stdout.write(self.style.SUCCESS(f"Deleted {deleted} deliveries older than {options['older_than']} days."))
