from django.core.exceptions import ValidationError
from django.core.management.base import CommandError

from flashnotify.commands import ExamplesCommand
from notifications.services import TESTABLE_CHANNELS, channel_send_test

EXAMPLES = """
examples:
  manage.py send_test email ops@example.edu
  manage.py send_test sms +33612345678
  manage.py send_test push '{"endpoint": "https://push.example/…", "keys": {"p256dh": "…", "auth": "…"}}'

Sends now, through the channel's provider (not the queue), and prints the provider's answer.
Exits with status 1 if the provider refused or failed.
"""


class Command(ExamplesCommand):
    help = "Send one test message on one channel to one address and show the provider's answer."
    examples = EXAMPLES

    def add_arguments(self, parser):
        parser.add_argument("channel", help=f"One of {', '.join(TESTABLE_CHANNELS)}.")
        parser.add_argument("address", help="Email address, E.164 phone number, or push subscription JSON.")
        parser.add_argument("--notifier", default="academic")

    def handle(self, *args, **options):
        try:
            outcome = channel_send_test(channel=options["channel"], address=options["address"],
                                        notifier=options["notifier"])
        except ValidationError as exc:
            raise CommandError(" ".join(exc.messages))
        except ValueError as exc:  # push subscription that is not JSON
            raise CommandError(f"Not a push subscription (JSON expected): {exc}")
        if outcome.ok:
            self.stdout.write(self.style.SUCCESS(f"Accepted by the {options['channel']} provider: "
                                                 f"{outcome.provider_message_id or 'no message id'}"))
            return
        kind = "permanent" if outcome.permanent else "transient"
        raise CommandError(f"The {options['channel']} provider did not accept it ({kind}): {outcome.error}")
