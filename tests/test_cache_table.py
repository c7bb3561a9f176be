"""`migrate` creates every table the app needs, the database cache's included; a missing one is a system check."""

import pytest
from django.core.cache import cache
from django.core.checks import run_checks
from django.core.management import call_command
from django.db import connection

from .test_settings import manage

pytestmark = pytest.mark.skipif(
    "DatabaseCache" not in __import__("django.conf").conf.settings.CACHES["default"]["BACKEND"],
    reason="REDIS_URL is set: the cache is Redis and there is no cache table")


def check_ids():
    return [message.id for message in run_checks()]


@pytest.mark.slow
def test_it_creates_the_cache_table_on_a_fresh_database_with_migrate_alone(tmp_path):
    database = {"DATABASE_URL": f"sqlite:///{tmp_path / 'fresh.sqlite3'}", "DEBUG": "true"}

    migrated = manage("migrate", "--noinput", "-v0", **database)
    assert migrated.returncode == 0, migrated.stderr
    used = manage("shell", "-v0", "-c",
                  "from django.core.cache import cache; cache.set('k', 'v'); print(cache.get('k'))", **database)

    assert used.returncode == 0, used.stderr
    assert used.stdout.strip().splitlines()[-1] == "v"
    assert manage("check", **database).returncode == 0

    # A database migrated before migrate created the table: a check error with the command, not a 500.
    dropped = manage("shell", "-v0", "-c", "from django.db import connection; "
                     "connection.cursor().execute('DROP TABLE flashnotify_cache')", **database)
    assert dropped.returncode == 0, dropped.stderr
    checked = manage("check", **database)
    assert checked.returncode != 0
    assert "flashnotify.E009" in checked.stderr and "manage.py createcachetable" in checked.stderr
    assert "Traceback" not in checked.stderr


@pytest.mark.django_db
def test_it_reports_a_missing_cache_table_with_the_command_to_run_and_migrate_puts_it_back():
    cache.set("breaker", "closed")
    assert "flashnotify.E009" not in check_ids()
    with connection.cursor() as cursor:
        cursor.execute(f"DROP TABLE {connection.ops.quote_name('flashnotify_cache')}")

    errors = [m for m in run_checks() if m.id == "flashnotify.E009"]
    assert errors and "flashnotify_cache" in errors[0].msg
    assert "manage.py createcachetable" in errors[0].hint

    call_command("migrate", "--noinput", verbosity=0)

    assert "flashnotify.E009" not in check_ids()
    cache.set("breaker", "open")
    assert cache.get("breaker") == "open"
