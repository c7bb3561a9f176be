"""The workers' queue: the one module that talks to django-q2.

Everything else hands work to the workers through these functions, so the broker (ORM or
Redis) and the task paths are known in one place. Tasks are the thin functions of
`notifications.tasks`; the sweep is a django-q2 Schedule kept by `ensure_sweep_schedule`.
"""

from django.conf import settings
from django_q.models import Schedule
from django_q.tasks import async_task

SWEEP_SCHEDULE = "flashnotify-sweep"


def enqueue_fan_out(notification_id):
    async_task("notifications.tasks.fan_out", notification_id, task_name=f"fan-out-{notification_id}"[:100])


def enqueue_fanout_pages(page_ids):
    for page_id in page_ids:
        async_task("notifications.tasks.plan_page", page_id)


def enqueue_deliveries(delivery_ids):
    """Hand delivery ids to the workers, one task per chunk."""
    size = settings.FANOUT_CHUNK_SIZE
    for start in range(0, len(delivery_ids), size):
        async_task("notifications.tasks.send_deliveries", delivery_ids[start:start + size])


def enqueue_digests(recipient_ids):
    async_task("notifications.tasks.send_digests", recipient_ids)


def ensure_sweep_schedule(sender=None, using="default", **kwargs):
    """The periodic sweep (reclaims, retries, schedules). Installed after every migrate, also after a test flush."""
    Schedule.objects.using(using).update_or_create(
        name=SWEEP_SCHEDULE,
        defaults={"func": "notifications.tasks.sweep", "schedule_type": Schedule.MINUTES, "minutes": 1,
                  "repeats": -1},
    )
