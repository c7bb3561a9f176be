"""The compliance ledger, protected in the database: see notifications/ledger_db.py for why and how.

The SQL is written out here (not imported) so that this migration keeps doing what it did when the
code around it changes. Only SQLite and PostgreSQL get triggers; another database gets none.
"""

from django.db import migrations

SQLITE_INSTALL = [
    """CREATE TRIGGER notifications_ledgerentry_no_update BEFORE UPDATE ON notifications_ledgerentry
    BEGIN
        SELECT RAISE(ABORT, 'The compliance ledger is append-only: an entry cannot be changed.');
    END""",
    # Datetimes are stored as UTC text ("YYYY-MM-DD HH:MM:SS.ffffff"), which compares as text with datetime().
    """CREATE TRIGGER notifications_ledgerentry_no_early_delete BEFORE DELETE ON notifications_ledgerentry
    WHEN OLD."at" > datetime('now', '-7 years') AND flashnotify_ledger_unlocked() = 0
    BEGIN
        SELECT RAISE(ABORT, 'The compliance ledger keeps every entry at least 7 years.');
    END""",
]
SQLITE_REMOVE = [
    "DROP TRIGGER IF EXISTS notifications_ledgerentry_no_update",
    "DROP TRIGGER IF EXISTS notifications_ledgerentry_no_early_delete",
]

POSTGRESQL_INSTALL = [
    """CREATE OR REPLACE FUNCTION notifications_ledgerentry_guard() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE
        unlocked boolean := coalesce(current_setting('flashnotify.ledger_unlocked', true), '') = 'on';
    BEGIN
        IF TG_OP = 'UPDATE' THEN
            RAISE EXCEPTION 'The compliance ledger is append-only: entry % cannot be changed.', OLD.id
                USING ERRCODE = 'integrity_constraint_violation';
        ELSIF TG_OP = 'DELETE' THEN
            IF OLD."at" > now() - interval '7 years' AND NOT unlocked THEN
                RAISE EXCEPTION 'The compliance ledger keeps every entry at least 7 years (entry %).', OLD.id
                    USING ERRCODE = 'integrity_constraint_violation';
            END IF;
            RETURN OLD;
        ELSIF TG_OP = 'TRUNCATE' AND NOT unlocked THEN
            RAISE EXCEPTION 'The compliance ledger cannot be truncated.'
                USING ERRCODE = 'integrity_constraint_violation';
        END IF;
        RETURN NULL;
    END
    $$""",
    """CREATE TRIGGER notifications_ledgerentry_guard BEFORE UPDATE OR DELETE ON notifications_ledgerentry
    FOR EACH ROW EXECUTE FUNCTION notifications_ledgerentry_guard()""",
    """CREATE TRIGGER notifications_ledgerentry_no_truncate BEFORE TRUNCATE ON notifications_ledgerentry
    FOR EACH STATEMENT EXECUTE FUNCTION notifications_ledgerentry_guard()""",
]
POSTGRESQL_REMOVE = [
    "DROP TRIGGER IF EXISTS notifications_ledgerentry_no_truncate ON notifications_ledgerentry",
    "DROP TRIGGER IF EXISTS notifications_ledgerentry_guard ON notifications_ledgerentry",
    "DROP FUNCTION IF EXISTS notifications_ledgerentry_guard()",
]


def _run(statements):
    def run(apps, schema_editor):
        for statement in statements.get(schema_editor.connection.vendor, ()):
            schema_editor.execute(statement, params=None)
    return run


class Migration(migrations.Migration):

    dependencies = [
        ("notifications", "0010_emergency"),
    ]

    operations = [
        migrations.RunPython(_run({"sqlite": SQLITE_INSTALL, "postgresql": POSTGRESQL_INSTALL}),
                             _run({"sqlite": SQLITE_REMOVE, "postgresql": POSTGRESQL_REMOVE}), elidable=False),
    ]
