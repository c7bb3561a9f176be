from django.core.management.base import CommandError

from accounts.roster import roster_import
from flashnotify.commands import ExamplesCommand

EXAMPLES = """
examples:
  manage.py import_roster export/                  # a directory holding manifest.csv, users.csv, ...
  manage.py import_roster oneroster-2026-09.zip    # or the same files in a zip
  manage.py import_roster oneroster.zip --dry-run  # print what would change; write nothing
  manage.py import_roster oneroster.zip --skip-invalid   # apply the valid rows, list the others

A OneRoster 1.2 CSV bundle: manifest.csv (manifest.version 1.0, oneroster.version 1.2, file.<name>
bulk, delta or absent), users.csv, classes.csv, enrollments.csv, and orgs.csv, courses.csv,
academicSessions.csv when the manifest lists them. People are matched by sourcedId (their
institutional id), then username; each class is a cohort, its students the members, its teachers
and administrators the managers. Someone a bulk users.csv no longer lists, or listed as
tobedeleted or enabledUser false, is deactivated (never deleted) and reactivated when listed again.
Every row is checked first: a problem is printed with its file and line, and nothing is applied
unless the whole bundle is valid (or --skip-invalid). Importing the same bundle again prints
"0 changes". Exits non-zero when the bundle is refused.
"""


class Command(ExamplesCommand):
    help = "Import people, classes (as cohorts) and enrollments from a OneRoster 1.2 CSV bundle."
    examples = EXAMPLES

    def add_arguments(self, parser):
        parser.add_argument("bundle", help="A directory or a .zip holding the bundle's CSV files.")
        parser.add_argument("--dry-run", action="store_true", help="Print the difference; write nothing.")
        parser.add_argument("--skip-invalid", action="store_true",
                            help="Apply the valid rows and list the invalid ones (a file that cannot be read "
                                 "still refuses the bundle).")

    def handle(self, *args, **options):
        report = roster_import(options["bundle"], dry_run=options["dry_run"], skip_invalid=options["skip_invalid"])
        for problem in report.problems:
            self.stderr.write(("skipped: " if options["skip_invalid"] and not report.refused else "") + str(problem))
        if report.refused:
            raise CommandError(f"{len(report.problems)} problem(s) in the bundle; nothing applied."
                               + ("" if options["skip_invalid"] or any(p.fatal for p in report.problems)
                                  else " Fix the bundle, or apply the valid rows with --skip-invalid."))
        for line in report.lines():
            self.stdout.write(f"  {line}")
        prefix = "Dry run (nothing written): " if options["dry_run"] else "Imported: "
        self.stdout.write(self.style.SUCCESS(prefix + report.summary() + "."))
        if report.problems:
            self.stdout.write(f"{len(report.problems)} invalid row(s) skipped.")
