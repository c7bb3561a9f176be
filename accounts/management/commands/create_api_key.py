from datetime import timedelta

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from accounts.models import ApiKey, Cohort, User
from accounts.services import api_key_create


class Command(BaseCommand):
    help = "Create an API key for a user and print it. The full key is shown this once only."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--name", required=True, help="What the key is for, e.g. 'SIS integration'.")
        parser.add_argument("--scope", action="append", dest="scopes", required=True,
                            choices=ApiKey.Scope.values, help="Repeat for several scopes.")
        parser.add_argument("--cohort", action="append", dest="cohorts", default=[],
                            help="Limit sending to this cohort code (repeatable).")
        parser.add_argument("--expires-days", type=int, help="Days until the key expires (default: never).")

    def handle(self, username, name, scopes, cohorts, expires_days, **options):
        user = User.objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"No user {username!r}.")
        found = list(Cohort.objects.filter(code__in=cohorts))
        missing = set(cohorts) - {c.code for c in found}
        if missing:
            raise CommandError(f"Unknown cohort(s): {', '.join(sorted(missing))}.")
        if expires_days is not None and expires_days <= 0:
            raise CommandError("--expires-days must be positive.")
        expires_at = timezone.now() + timedelta(days=expires_days) if expires_days else None
        try:
            key, raw = api_key_create(user=user, name=name, scopes=scopes, cohorts=found, expires_at=expires_at)
        except ValidationError as exc:
            raise CommandError("; ".join(exc.messages))
        self.stderr.write(f"API key {key.prefix}… created for {user.username} with scopes {', '.join(key.scopes)}. "
                          "Copy it now: it will not be shown again.")
        self.stdout.write(raw)
