"""The database cache's tables (settings.CACHES with DatabaseCache, the default without REDIS_URL).

`manage.py migrate` creates them (`cache_tables_create`, connected to post_migrate), so a fresh
database is complete after migrate alone; on Redis there is no such table and nothing is done.
`missing_cache_tables` backs the system check that names the command to run when one is missing.
"""

import os

from django.conf import settings
from django.core.cache import caches
from django.core.cache.backends.db import DatabaseCache
from django.core.management import call_command
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections, router


def database_cache_tables(using=DEFAULT_DB_ALIAS):
    """Names of the DatabaseCache tables that live in database `using`."""
    tables = []
    for alias in settings.CACHES:
        cache = caches[alias]
        if isinstance(cache, DatabaseCache) and router.allow_migrate_model(using, cache.cache_model_class):
            tables.append(cache._table)
    return tables


def cache_tables_create(sender=None, using=DEFAULT_DB_ALIAS, verbosity=0, **kwargs):
    """Create the database cache tables that are missing (post_migrate); an existing one is left as it is."""
    if database_cache_tables(using):
        call_command("createcachetable", database=using, verbosity=verbosity)


def missing_cache_tables(using=DEFAULT_DB_ALIAS):
    """The DatabaseCache tables absent from a database that has been migrated ([] if it never was or is unreachable)."""
    wanted = database_cache_tables(using)
    if not wanted:
        return []
    connection = connections[using]
    name = connection.settings_dict.get("NAME")
    if connection.vendor == "sqlite" and (not name or (str(name) != ":memory:" and not os.path.exists(name))):
        return []  # not created yet: connecting would create an empty file as a side effect
    try:
        existing = set(connection.introspection.table_names())
    except (DatabaseError, RuntimeError):
        # An unreachable database is not this check's to report, nor one a test run keeps closed
        # (pytest-django refuses database access with a RuntimeError, e.g. while importing the WSGI app).
        return []
    if "django_migrations" not in existing:
        return []  # never migrated: `migrate` will create everything
    return [table for table in wanted if table not in existing]
