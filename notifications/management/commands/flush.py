"""Django's `flush`, which also empties the compliance ledger when LEDGER_FLUSH_ALLOWED is on.

The ledger's database triggers refuse to delete entries younger than 7 years (notifications.ledger_db),
so a plain flush would fail on SQLite (it deletes row by row) and on PostgreSQL (TRUNCATE is refused
too). The test suite flushes after every transactional test: its environment turns the setting on.
Anywhere else the setting is off, and a flush with ledger entries to keep is refused before anything
is deleted.
"""

from django.conf import settings
from django.core.management import CommandError
from django.core.management.commands import flush
from django.db import DEFAULT_DB_ALIAS, connections

from notifications.ledger_db import ledger_unlocked
from notifications.models import LedgerEntry


class Command(flush.Command):
    help = flush.Command.help + " The compliance ledger is emptied only when LEDGER_FLUSH_ALLOWED is on."

    def handle(self, **options):
        connection = connections[options.get("database") or DEFAULT_DB_ALIAS]
        if not settings.LEDGER_FLUSH_ALLOWED:
            if LedgerEntry.objects.using(connection.alias).exists():
                raise CommandError(
                    "The compliance ledger has entries, which must be kept (LEDGER_RETENTION_YEARS): flush "
                    "would delete them, and the database refuses. Set LEDGER_FLUSH_ALLOWED=true only for a "
                    "database whose ledger may go (a test or demo database).")
            return super().handle(**options)
        with ledger_unlocked(connection):
            return super().handle(**options)
