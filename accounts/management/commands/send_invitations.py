from django.core.management.base import CommandError

from accounts.invitations import (
    SKIP_REASONS,
    invitation_skip_reason,
    invitations_send,
    users_pending_invitation,
)
from accounts.models import User
from flashnotify.commands import ExamplesCommand

EXAMPLES = """
examples:
  manage.py send_invitations s1000001 s1000002     # (re)send these people their invitation
  manage.py send_invitations --all-pending         # everyone active, with an email, who has no password yet
  manage.py send_invitations --all-pending --dry-run

An invitation is an email, in the person's language, with a link to choose their password
(valid INVITATION_TTL_DAYS days, usable once). Nobody is sent one who is inactive, has no email
address or already has a password: each is reported with the reason. An unknown username stops
the command before anything is sent.
"""


class Command(ExamplesCommand):
    help = "Send invitations (a link to choose a password) to people who have no password yet."
    examples = EXAMPLES

    def add_arguments(self, parser):
        parser.add_argument("usernames", nargs="*", metavar="username")
        parser.add_argument("--all-pending", action="store_true",
                            help="Everyone active with an email address who has no password yet.")
        parser.add_argument("--dry-run", action="store_true", help="Say who would be sent one and who not; send nothing.")

    def handle(self, usernames, all_pending, dry_run, **options):
        if not usernames and not all_pending:
            raise CommandError("Name the usernames to invite, or use --all-pending.")
        named = {user.username: user for user in User.objects.filter(username__in=usernames)}
        unknown = [name for name in dict.fromkeys(usernames) if name not in named]
        if unknown:
            raise CommandError(f"No user {', '.join(map(repr, unknown))}: nothing was sent.")
        users = list(named.values())
        if all_pending:
            users += [user for user in users_pending_invitation() if user.username not in named]
        if dry_run:
            ready = [user.username for user in users if not invitation_skip_reason(user)]
            self.stdout.write(f"Dry run: {len(ready)} would be sent" + (f" ({', '.join(ready)})." if ready else "."))
            for user in users:
                reason = invitation_skip_reason(user)
                if reason:
                    self.stdout.write(f"skipped {user.username}: {SKIP_REASONS[reason]}")
            return
        report = invitations_send(users)
        for reason, skipped in report.skipped.items():
            for user in skipped:
                self.stdout.write(f"skipped {user.username}: {SKIP_REASONS[reason]}")
        self.stdout.write(self.style.SUCCESS(
            f"{len(report.sent)} invitation(s) sent, {report.skipped_count} skipped, {len(report.failed)} failed."))
        if report.failed:
            raise CommandError(f"Could not send to {', '.join(u.username for u in report.failed)} (see the log).")
