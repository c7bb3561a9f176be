"""The starter library of incident templates, for tests that use it.

The data migration (notifications 0011) puts it in every database; a transactional test's flush
empties the table for the tests after it, so these put it back (idempotent, as the migration is).
"""

import importlib

import pytest
from django.apps import apps

STARTER_MIGRATION = "notifications.migrations.0011_em_templates"


@pytest.fixture
def starter_library(db):
    importlib.import_module(STARTER_MIGRATION).add_starter_library(apps, None)


__all__ = ["starter_library"]
