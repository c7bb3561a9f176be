"""The compliance ledger's protection in the database itself, beside the ORM's (LedgerEntry).

Migration 0011 adds triggers on `notifications_ledgerentry` (SQLite and PostgreSQL): an UPDATE of any
row is refused, and so is a DELETE of a row younger than LEDGER_MIN_YEARS (the legal minimum; the
retention job deletes only older ones). PostgreSQL also refuses TRUNCATE of the table.

The one exception is `flush` (which empties every table; the test suite runs it after each
transactional test): while `ledger_unlocked(connection)` is open, the triggers let a DELETE or a
TRUNCATE through. The marker is the connection's own, so nothing else is unlocked meanwhile:
- SQLite: a function `flashnotify_ledger_unlocked()` installed on each connection Django opens; it answers
  1 only inside `ledger_unlocked`. A connection opened outside Django (the sqlite3 shell) has no such
  function, so any DELETE there fails: the guard fails closed.
- PostgreSQL: the session setting `flashnotify.ledger_unlocked`, set to 'on' inside `ledger_unlocked`.

This guards against mistakes and SQL run by hand, not against whoever owns the database (they can drop
a trigger): the hash chain (LedgerEntry.verify_chain) is what shows an edit made that way.
"""

import contextlib

LEDGER_MIN_YEARS = 7
SQLITE_FUNCTION = "flashnotify_ledger_unlocked"
POSTGRESQL_SETTING = "flashnotify.ledger_unlocked"
TRIGGER_NAMES = {
    "sqlite": ("notifications_ledgerentry_no_update", "notifications_ledgerentry_no_early_delete"),
    "postgresql": ("notifications_ledgerentry_guard", "notifications_ledgerentry_no_truncate"),
}


def install_sqlite_function(sender, connection, **kwargs):
    """connection_created receiver: give a new SQLite connection the trigger's unlock function."""
    if connection.vendor != "sqlite":
        return
    connection.connection.create_function(
        SQLITE_FUNCTION, 0, lambda: 1 if getattr(connection, "ledger_unlocked", False) else 0)


@contextlib.contextmanager
def ledger_unlocked(connection):
    """Let DELETE and TRUNCATE of the ledger through on `connection` only, for the time of the block."""
    connection.ensure_connection()
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT set_config(%s, 'on', false)", [POSTGRESQL_SETTING])
    connection.ledger_unlocked = True
    try:
        yield
    finally:
        connection.ledger_unlocked = False
        if connection.vendor == "postgresql" and connection.connection is not None:
            with connection.cursor() as cursor:
                cursor.execute("SELECT set_config(%s, 'off', false)", [POSTGRESQL_SETTING])


def ledger_triggers_missing(connection):
    """The names of the ledger's triggers missing on `connection` (an empty list when all are there).

    None when the database is neither SQLite nor PostgreSQL (no trigger is installed there)."""
    names = TRIGGER_NAMES.get(connection.vendor)
    if names is None:
        return None
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute("SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = %s",
                           ["notifications_ledgerentry"])
        else:
            cursor.execute("SELECT tgname FROM pg_trigger WHERE tgrelid = 'notifications_ledgerentry'::regclass "
                           "AND NOT tgisinternal")
        found = {row[0] for row in cursor.fetchall()}
    return [name for name in names if name not in found]
