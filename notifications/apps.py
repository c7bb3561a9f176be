from django.apps import AppConfig
from django.db.backends.signals import connection_created
from django.db.models.signals import post_delete, post_migrate
from django.utils.translation import gettext_lazy as _


class NotificationsConfig(AppConfig):
    name = "notifications"
    verbose_name = _("Notifications")

    def ready(self):
        # Wiring, as Django's contrib apps do it: the digest notifier registers itself on import,
        # receipts and text messages received arrive by signal, and the schedules of the sweep and of the
        # retention purge are kept after every migrate.
        from channels_app.signals import receipt, sms_received

        from .engine import digest, queue  # noqa: F401  (digest registers the digest notifier)
        from .engine.inbox import inbox_unread_changed_for_all
        from .ledger_db import install_sqlite_function
        from .models import Notification
        from .services.checkin import sms_received as sms_reply_received
        from .services.receipts import receipt_received

        # The ledger's SQLite triggers call a function of ours (notifications.ledger_db): every connection gets it.
        connection_created.connect(install_sqlite_function, dispatch_uid="notifications.ledger_db")
        receipt.connect(receipt_received, dispatch_uid="notifications.receipts")
        sms_received.connect(sms_reply_received, dispatch_uid="notifications.checkin")
        # A notification deleted takes its inbox messages with it: the cached unread counts are recounted.
        post_delete.connect(inbox_unread_changed_for_all, sender=Notification, dispatch_uid="notifications.unread")
        post_migrate.connect(queue.ensure_sweep_schedule, sender=self, dispatch_uid="notifications.sweep_schedule")
        post_migrate.connect(queue.ensure_retention_schedule, sender=self,
                             dispatch_uid="notifications.retention_schedule")
