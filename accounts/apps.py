from django.apps import AppConfig
from django.db.models.signals import post_migrate
from django.utils.translation import gettext_lazy as _


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = _("Accounts")

    def ready(self):
        from flashnotify import checks  # noqa: F401  (registers the settings checks)
        from flashnotify.cache_tables import cache_tables_create
        from notifications.engine.queue import ensure_roster_schedule

        from .roles import sync_roles_after_migrate

        post_migrate.connect(sync_roles_after_migrate, sender=self, dispatch_uid="accounts.sync_roles")
        # `migrate` leaves nothing to do by hand: the database cache's table is created with the rest.
        post_migrate.connect(cache_tables_create, sender=self, dispatch_uid="accounts.cache_tables")
        # The OneRoster REST sync's schedule, kept after every migrate (removed when not configured).
        post_migrate.connect(ensure_roster_schedule, sender=self, dispatch_uid="accounts.roster_schedule")

