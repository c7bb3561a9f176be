import json
import os

from django.core.management.base import CommandError

from accounts.data_rights import user_data_export
from flashnotify.commands import ExamplesCommand

from ._acting import acting_admin, user_named

EXAMPLES = """
examples:
  manage.py export_user s1000001 --by a3000001                     # JSON on standard output
  manage.py export_user s1000001 --by a3000001 --output s1000001.json

Everything held about one person (profile, preferences, cohorts, push subscriptions as host and
hash, deliveries, inbox, acknowledgements, phone verification, API keys without their secret), as
JSON. --by names the administrator who asks: the export is recorded in the admin history as theirs.
A file written with --output is readable by its owner only.
"""


class Command(ExamplesCommand):
    help = "Export everything FlashNotify holds about one user, as JSON (a data subject access request)."
    examples = EXAMPLES

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--by", required=True, metavar="ADMIN",
                            help="Username of the administrator asking (recorded in the admin history).")
        parser.add_argument("--output", metavar="FILE", help="Write the JSON to FILE instead of standard output.")

    def handle(self, username, by, output, **options):
        user = user_named(username)
        admin = acting_admin(by)
        text = json.dumps(user_data_export(user=user, by=admin), indent=2, ensure_ascii=False)
        if not output:
            self.stdout.write(text)
            return
        try:
            fd = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as stream:
                stream.write(text + "\n")
        except OSError as exc:
            raise CommandError(f"Cannot write {output}: {exc.strerror}.")
        self.stderr.write(f"Exported {username} to {output}.")
