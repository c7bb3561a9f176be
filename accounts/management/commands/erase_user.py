from django.core.exceptions import ValidationError
from django.core.management.base import CommandError

from accounts.data_rights import user_erase
from flashnotify.commands import ExamplesCommand

from ._acting import acting_admin, user_named

EXAMPLES = """
examples:
  manage.py erase_user s1000001 --by a3000001 --yes

Erases one person's personal data for good: name, email, phone, password, roles, cohorts,
preferences, push subscriptions, API keys, phone codes, and the content of their inbox and
deliveries; every session and token ends and the account cannot sign in. Their deliveries and
inbox messages stay as rows of an anonymous account (erased-<id>), so every notification's counts
stay true. --by names the administrator who asks: the erasure is recorded in the admin history as
theirs. Nothing happens without --yes. Export first (export_user) if the person asked for a copy.
"""


class Command(ExamplesCommand):
    help = "Erase one user's personal data (the right to erasure), keeping notification counts true."
    examples = EXAMPLES

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--by", required=True, metavar="ADMIN",
                            help="Username of the administrator asking (recorded in the admin history).")
        parser.add_argument("--yes", action="store_true", help="Confirm: the erasure cannot be undone.")

    def handle(self, username, by, yes, **options):
        user = user_named(username)
        admin = acting_admin(by)
        if not yes:
            raise CommandError(f"Erasing {username} cannot be undone: add --yes to confirm. Nothing was changed.")
        try:
            done = user_erase(user=user, by=admin)
        except ValidationError as exc:
            raise CommandError(" ".join(exc.messages))
        self.stdout.write(self.style.SUCCESS(
            f"Erased {username}, now {done['username']}: {done['deliveries']} deliveries and "
            f"{done['inbox_messages']} inbox messages anonymised ({done['deliveries_cancelled']} pending cancelled), "
            f"{done['push_subscriptions']} push subscriptions and {done['api_keys']} API keys removed."))
        if done["ledger_entries_kept"]:
            self.stdout.write(f"Kept {done['ledger_entries_kept']} compliance ledger entries that name them: the "
                              "ledger of emergency alerts is kept by law (LEDGER_RETENTION_YEARS).")
