from django.core.exceptions import ValidationError
from django.core.management.base import CommandError

from accounts.services import USER_COLUMNS, users_read_csv, users_upsert
from flashnotify.commands import ExamplesCommand

EXAMPLES = f"""
examples:
  manage.py import_users students.csv              # create or update; refuses the file if a row is invalid
  manage.py import_users students.csv --dry-run    # check every row, write nothing
  manage.py import_users students.csv --skip-invalid
  manage.py import_users students.csv --batch-size 1000

columns: {', '.join(USER_COLUMNS)} (only 'username' is required;
cohorts is a ';'-separated list of cohort codes, and replaces the user's memberships).
Rerunning the same file changes nothing.
"""


class Command(ExamplesCommand):
    help = "Create or update users and their cohort memberships from a CSV file."
    examples = EXAMPLES

    def add_arguments(self, parser):
        parser.add_argument("csv_file")
        parser.add_argument("--dry-run", action="store_true", help="Check every row; write nothing.")
        parser.add_argument("--skip-invalid", action="store_true", help="Import the valid rows, report the others.")
        parser.add_argument("--batch-size", type=int, default=500)

    def handle(self, *args, **options):
        if options["batch_size"] < 1:
            raise CommandError("--batch-size must be at least 1.")
        try:
            with open(options["csv_file"], encoding="utf-8-sig", newline="") as stream:
                rows = users_read_csv(stream)
        except OSError as exc:
            raise CommandError(f"Cannot read {options['csv_file']}: {exc.strerror}.")
        except UnicodeDecodeError:
            raise CommandError(f"{options['csv_file']} is not UTF-8 text.")
        except ValidationError as exc:
            raise CommandError(" ".join(exc.messages))
        check = users_upsert(rows, dry_run=True, batch_size=options["batch_size"])
        for row in check.invalid:
            for field, messages in row.errors.items():
                self.stderr.write(f"line {row.line} ({row.username or 'no username'}): {field}: {' '.join(messages)}")
        if check.invalid and not options["skip_invalid"] and not options["dry_run"]:
            raise CommandError(f"{len(check.invalid)} invalid row(s); nothing imported. Fix the file, or import "
                               f"the valid rows with --skip-invalid.")
        report = check if options["dry_run"] else users_upsert(rows, batch_size=options["batch_size"])
        summary = ", ".join(f"{count} {action}" for action, count in report.summary().items())
        self.stdout.write(self.style.SUCCESS(f"{'Dry run: ' if options['dry_run'] else ''}{summary}."))
        if options["dry_run"] and check.invalid:
            raise CommandError(f"{len(check.invalid)} invalid row(s).")
