import json
import sys
import time
from argparse import RawDescriptionHelpFormatter

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.management.base import BaseCommand, CommandError

from accounts.models import Cohort
from channels_app.registry import NotificationMeta
from notifications.management.progress import Progress
from notifications.models import Delivery, Notification
from notifications.selectors import audience_users, notification_plan_counts
from notifications.services import (
    IdempotencyConflict, notification_preview, notification_send, notification_validate,
)
from notifications.services.batches import (
    batch_key,
    batch_read,
    batch_send,
    batch_templates_check,
    batch_titles_check,
)

User = get_user_model()

EXAMPLES = """
examples:
  # one personalised message per row; every other column is template context
  manage.py send_batch grades.csv --category grade \\
      --title "Your {{ course }} grade" --body "Dear {{ first_name }}, your grade is {{ grade }}."
  # counts and the first rendered message, nothing written
  manage.py send_batch grades.csv --title ... --body ... --dry-run
  # send the valid rows and report the others
  manage.py send_batch grades.csv --title ... --body ... --skip-invalid
  # resume an interrupted run: the same file and options (or the same --idempotency-key) send only what is missing
  manage.py send_batch grades.csv --title ... --body ... --idempotency-key grades-2026-s1
  # to a cohort, on two channels
  manage.py send_batch --cohort cs101-2026 --channels email,inbox --title "Room change" --body "B12 tomorrow."
  # with a French version: recipients whose language is French get it, the others the English one
  manage.py send_batch --cohort cs101-2026 --title "Room change" --body "B12 tomorrow." \
      --title-fr "Changement de salle" --body-fr "B12 demain."

CSV: a header line with a 'username' column (student or staff number), one row per recipient.
"""


class Command(BaseCommand):
    help = "Send a notification to every row of a CSV (personalised per row) or to a cohort."

    def create_parser(self, prog_name, subcommand, **kwargs):
        parser = super().create_parser(prog_name, subcommand, **kwargs)
        parser.epilog = EXAMPLES

        parser.formatter_class = RawDescriptionHelpFormatter
        return parser

    def add_arguments(self, parser):
        parser.add_argument("csv_file", nargs="?", help="CSV file ('-' for standard input).")
        parser.add_argument("--cohort", help="Send to this cohort's members instead of a CSV.")
        parser.add_argument("--notifier", default="academic", help="Notifier key (default: academic).")
        parser.add_argument("--category", help="Category (default: the notifier's first).")
        parser.add_argument("--priority", default="normal")
        parser.add_argument("--channels", help="Comma-separated channels (default: the notifier's).")
        parser.add_argument("--title", required=True, help="Title; a template over the row's columns.")
        parser.add_argument("--body", required=True, help="Body; a template over the row's columns.")
        parser.add_argument("--title-fr", default="", help="Title in French, for recipients who read French "
                                                             "(English when none is given); a template too.")
        parser.add_argument("--body-fr", default="", help="Body in French; give it with --title-fr.")
        parser.add_argument("--data", default="{}", help="JSON object of extra context for every recipient.")
        parser.add_argument("--sender", help="Username of the sender (their cohort scope applies). Required for an "
                                             "emergency alert (--notifier security) under the two-person rule.")
        parser.add_argument("--alert-status", choices=["actual", "exercise", "test"], default=None,
                            help="Emergency alerts only: an exercise is labelled EXERCISE on every channel; a test "
                                 "goes only to the test list (EMERGENCY_TEST_COHORT). Default: actual.")
        parser.add_argument("--idempotency-key", help="Key of this batch (default: derived from the file and options).")
        parser.add_argument("--chunk-size", type=int, default=5000, help="Rows per notification (default 5000).")
        parser.add_argument("--dry-run", action="store_true", help="Show counts and the first message; write nothing.")
        parser.add_argument("--skip-invalid", action="store_true", help="Send the valid rows, report the others.")
        parser.add_argument("--wait", type=float, metavar="SECONDS",
                            help="Follow the deliveries until none is pending (at most SECONDS).")

    def handle(self, *args, **options):
        if bool(options["csv_file"]) == bool(options["cohort"]):
            raise CommandError("Give a CSV file or --cohort CODE (one of them).")
        if options["notifier"] not in NotificationMeta.registry:
            raise CommandError(f"Unknown notifier {options['notifier']!r}; choose one of "
                               f"{', '.join(sorted(NotificationMeta.registry))}.")
        if options["chunk_size"] < 1:
            raise CommandError("--chunk-size must be at least 1.")
        try:
            data = json.loads(options["data"])
            assert isinstance(data, dict)
        except (ValueError, AssertionError):
            raise CommandError("--data must be a JSON object.")
        sender = None
        if options["sender"]:
            sender = User.objects.filter(username=options["sender"]).first()
            if sender is None:
                raise CommandError(f"Unknown sender {options['sender']!r}.")
        if (options["notifier"] == Notification.EMERGENCY_NOTIFIER and settings.EMERGENCY_TWO_PERSON_RULE
                and sender is None and not options["dry_run"]):
            # Without a sender the alert would be the system's and go at once: a person at a shell is a person.
            raise CommandError("An emergency alert needs --sender: the person who drafts it (it then awaits a "
                               "second person's approval, the two-person rule).")
        channels = [c.strip() for c in options["channels"].split(",") if c.strip()] if options["channels"] else None
        fields = dict(sender=sender, notifier=options["notifier"], title=options["title"], body=options["body"],
                      category=options["category"], priority=options["priority"], channels=channels, data=data)
        if options["alert_status"]:
            fields["alert_status"] = options["alert_status"]
        if options["title_fr"] or options["body_fr"]:
            fields["translations"] = {"fr": {"title": options["title_fr"], "body": options["body_fr"]}}
        try:
            if options["cohort"]:
                return self.to_cohort(options, fields)
            return self.from_csv(options, fields)
        except IdempotencyConflict as exc:
            raise CommandError(f"{exc} Use another --idempotency-key for a different batch.")
        except PermissionDenied as exc:
            raise CommandError(f"Refused: {exc}")
        except ValidationError as exc:
            raise CommandError(self.describe(exc))

    # The service's field names as this command's arguments, so a refusal names what to change.
    ARGUMENTS = {"notifier": "--notifier", "category": "--category", "priority": "--priority",
                 "channels": "--channels", "title": "--title", "body": "--body", "data": "--data",
                 "title_fr": "--title-fr", "body_fr": "--body-fr", "alert_status": "--alert-status"}

    @classmethod
    def describe(cls, exc):
        if hasattr(exc, "message_dict"):
            return "; ".join(f"{cls.ARGUMENTS.get(field, field)}: {' '.join(messages)}"
                             for field, messages in exc.message_dict.items())
        return " ".join(exc.messages)

    @staticmethod
    def validate(fields, audience):
        """notification_validate, as sending will run it: a dry run refuses exactly what sending would."""
        return notification_validate(audience=audience, **{k: v for k, v in fields.items() if k != "sender"})

    @staticmethod
    def draft(cleaned):
        return Notification(**{name: cleaned[name] for name in (
            "notifier", "category", "priority", "title", "body", "translations", "data", "channels", "audience",
            "requires_ack", "alert_status")})

    def show_plan(self, notification, recipients, first_user, context):
        counts = notification_plan_counts(notification, recipients)
        self.stdout.write(f"People: {counts['people']}")
        for channel, row in sorted(counts["channels"].items()):
            self.stdout.write(f"  {channel:<6} {row['send']} to send, {row['digest']} in digests, "
                              f"{row['skipped']} skipped (unreachable)")
        if first_user is not None:
            self.stdout.write(f"First message, for {first_user.username}:")
            for channel, parts in notification_preview(notification, first_user, context=context).items():
                for part, text in parts.items():
                    if part != "html":
                        self.stdout.write(f"  [{channel} {part}] {text}")
        self.stdout.write("Dry run: nothing written.")

    def from_csv(self, options, fields):
        batch_templates_check(fields["title"], fields["body"], fields.get("translations"))
        try:
            stream = sys.stdin if options["csv_file"] == "-" else open(options["csv_file"], encoding="utf-8-sig",
                                                                        newline="")
        except OSError as exc:
            raise CommandError(f"Cannot read {options['csv_file']}: {exc.strerror}.")
        with stream:
            batch = batch_titles_check(batch_read(stream), fields["title"], fields["data"], fields.get("translations"))
        for line, reason in batch.problems:
            self.stderr.write(f"line {line}: {reason}")
        refused = ""
        try:
            # With no valid row, the arguments are still checked (against an audience that needs no row).
            cleaned = self.validate(fields, {"users": [row.username for row in batch.rows]} if batch.rows
                                    else {"everyone": True})
        except ValidationError as exc:
            refused = self.describe(exc)
        if batch.problems and not options["skip_invalid"]:
            raise CommandError(f"{len(batch.problems)} invalid row(s); nothing sent. Fix the file, or send the "
                               f"{len(batch.rows)} valid row(s) with --skip-invalid."
                               + (f" Also: {refused}" if refused else ""))
        if refused:
            raise CommandError(refused)
        if not batch.rows:
            raise CommandError("No valid row to send.")
        if options["dry_run"]:
            draft = self.draft(cleaned)
            first = User.objects.get(pk=batch.rows[0].user_id)
            recipients = User.objects.filter(pk__in=[row.user_id for row in batch.rows])
            self.show_plan(draft, recipients, first, batch.rows[0].context)
            return
        key_options = {k: v for k, v in fields.items() if k != "sender"}
        key_options.update(sender=options["sender"], chunk_size=options["chunk_size"])
        key = options["idempotency_key"] or batch_key(batch, key_options)
        results = batch_send(rows=batch.rows, key=key, chunk_size=options["chunk_size"],
                             progress=Progress(self.stdout, "accepted"), **fields)
        created = sum(1 for _, was_created in results if was_created)
        self.stdout.write(self.style.SUCCESS(
            f"Batch {key}: {len(batch.rows)} recipient(s) in {len(results)} notification(s) "
            f"({created} new, {len(results) - created} already accepted): "
            f"{', '.join(str(n.pk) for n, _ in results)}."))
        if batch.problems:
            self.stdout.write(f"Skipped {len(batch.problems)} invalid row(s).")
        if self.report_awaiting([n for n, _ in results]):
            return
        if options["wait"]:
            self.follow([n.pk for n, _ in results], options["wait"])

    def to_cohort(self, options, fields):
        cohort = Cohort.objects.filter(code=options["cohort"]).first()
        if cohort is None:
            raise CommandError(f"Unknown cohort {options['cohort']!r}.")
        audience = {"cohorts": [cohort.code]}
        cleaned = self.validate(fields, audience)
        if options["dry_run"]:
            recipients = audience_users(audience)
            self.show_plan(self.draft(cleaned), recipients, recipients.order_by("pk").first(), None)
            return
        notification, created = notification_send(audience=audience, idempotency_key=options["idempotency_key"],
                                                  **fields)
        self.stdout.write(self.style.SUCCESS(
            f"Notification {notification.pk} to cohort {cohort.code}: "
            f"{'accepted' if created else 'already accepted (same idempotency key)'}."))
        if self.report_awaiting([notification]):
            return
        if options["wait"]:
            self.follow([notification.pk], options["wait"])

    def report_awaiting(self, notifications):
        """Say which notifications await a second person's approval (nothing to follow until then)."""
        awaiting = [n.pk for n in notifications if n.status == Notification.Status.AWAITING_APPROVAL]
        if awaiting:
            self.stdout.write(self.style.WARNING(
                f"Awaiting approval (two-person rule): {', '.join(map(str, awaiting))}. Nothing is sent until a second "
                "person with the emergency permission approves it (console Watch page, or POST "
                "/api/v1/notifications/<id>/approve/)."))
        return bool(awaiting)

    def follow(self, notification_ids, timeout):
        progress = Progress(self.stdout, "delivered")
        deadline = time.monotonic() + timeout
        deliveries = Delivery.objects.filter(notification_id__in=notification_ids, digest=False)
        while True:
            fanned = Notification.objects.filter(pk__in=notification_ids, fanned_out_at__isnull=False).count()
            total = deliveries.count()
            pending = deliveries.filter(status__in=Delivery.PENDING_STATUSES).count()
            progress(total - pending, total or 1)
            if fanned == len(notification_ids) and not pending:
                return
            if time.monotonic() > deadline:
                raise CommandError(f"Still {pending} pending deliveries after {timeout:.0f}s (they continue).")
            time.sleep(0.5)
