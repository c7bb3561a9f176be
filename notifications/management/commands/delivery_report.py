from django.core.management.base import CommandError

from flashnotify.commands import ExamplesCommand
from flashnotify.csv_export import csv_writer
from notifications.models import Delivery, Notification
from notifications.selectors import (
    delivery_counts,
    notification_reach,
    reason_counts,
    reason_label,
)

EXAMPLES = """
examples:
  manage.py delivery_report 42                 # summary: per channel and status, reach over time
  manage.py delivery_report 42 --csv > 42.csv  # one line per delivery
  manage.py delivery_report 42 --csv --status failed
  manage.py delivery_report 42 --csv --status skipped   # who did not get it, and why (reason column)
"""

COLUMNS = ("delivery_id", "username", "email", "channel", "status", "attempts", "sent_at", "delivered_at",
           "failed_at", "provider_message_id", "reason", "error", "possible_duplicate")


class Command(ExamplesCommand):
    help = "A notification's deliveries: a summary, or every delivery as CSV."
    examples = EXAMPLES

    def add_arguments(self, parser):
        parser.add_argument("notification_id", type=int)
        parser.add_argument("--csv", action="store_true", help="Every delivery as CSV on standard output.")
        parser.add_argument("--status", choices=Delivery.Status.values, help="Only deliveries in this status.")

    def handle(self, *args, **options):
        notification = Notification.objects.filter(pk=options["notification_id"]).first()
        if notification is None:
            raise CommandError(f"No notification {options['notification_id']}.")
        if options["csv"]:
            return self.as_csv(notification, options["status"])
        reach = notification_reach(notification)
        self.stdout.write(f"Notification {notification.pk}: {notification.title} ({notification.status})")
        self.stdout.write(f"Recipients: {reach['recipients']}, reached: {reach['reached']} ({reach['share']:.0%})"
                          + "".join(f"; {row['people']} {row['label']}" for row in reach["unreached"]))
        for percent, seconds in reach["after"].items():
            self.stdout.write(f"  {percent}% reached after " + (f"{seconds:.1f}s" if seconds is not None else "—"))
        for channel, statuses in sorted(delivery_counts(notification).items()):
            if options["status"]:
                statuses = {options["status"]: statuses.get(options["status"], 0)}
            self.stdout.write(f"  {channel:<6} " + ", ".join(f"{status} {n}" for status, n in sorted(statuses.items())))
        duplicates = Delivery.objects.filter(notification=notification, reclaims__gt=0, send_count__gt=0).count()
        if duplicates:
            self.stdout.write(f"Possible duplicates: {duplicates} (sent, and a worker stopped while holding them; "
                              "see --csv)")
        reasons = reason_counts(notification)
        if reasons and not options["status"]:
            self.stdout.write("Not delivered, or not yet, by reason:")
            for channel, by_reason in sorted(reasons.items()):
                self.stdout.write(f"  {channel:<6} " + ", ".join(
                    f"{reason_label(code)} {n}" for code, n in sorted(by_reason.items())))

    def as_csv(self, notification, status):
        writer = csv_writer(self.stdout)
        writer.writerow(COLUMNS)
        deliveries = Delivery.objects.filter(notification=notification).select_related("recipient").order_by("pk")
        if status:
            deliveries = deliveries.filter(status=status)
        for d in deliveries.iterator(chunk_size=2000):
            writer.writerow([d.pk, d.recipient.username, d.recipient.email, d.channel, d.status, d.attempts,
                             d.sent_at and d.sent_at.isoformat(), d.delivered_at and d.delivered_at.isoformat(),
                             d.failed_at and d.failed_at.isoformat(), d.provider_message_id, d.reason_code,
                             d.last_error or d.reason_text, "yes" if d.possible_duplicate else ""])
