from django.apps import AppConfig
from django.db.models.signals import post_migrate


def ensure_sweep_schedule(sender, using="default", **kwargs):
    """The periodic sweep (reclaims, retries, schedules). Also restored after a test flush."""
    from django_q.models import Schedule

    Schedule.objects.using(using).update_or_create(
        name="flashnotify-sweep",
        defaults={"func": "notifications.tasks.sweep", "schedule_type": Schedule.MINUTES, "minutes": 1,
                  "repeats": -1},
    )


class NotificationsConfig(AppConfig):
    name = "notifications"
    verbose_name = "Notifications"

    def ready(self):
        from . import digest  # noqa: F401  (registers the digest notifier)

        post_migrate.connect(ensure_sweep_schedule, sender=self, dispatch_uid="notifications.sweep_schedule")
