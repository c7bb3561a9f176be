"""The workers' queue: the one module that talks to django-q2.

Everything else hands work to the workers through these functions, so the broker (ORM or
Redis) and the task paths are known in one place. Tasks are the thin functions of
`notifications.tasks`; the sweep and the retention purge are django-q2 Schedules kept by `ensure_sweep_schedule`
and `ensure_retention_schedule`.
"""

from datetime import timedelta

from django.conf import settings
from django.utils import timezone
from django_q.brokers.orm import ORM
from django_q.conf import Conf
from django_q.models import Schedule
from django_q.tasks import async_task

SWEEP_SCHEDULE = "flashnotify-sweep"
RETENTION_SCHEDULE = "flashnotify-retention"


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


class _ORMAt(ORM):
    """The ORM broker, writing a task that no worker takes before `when`.

    Its queue is a table whose `lock` column says when a task may be taken (`lock < now`),
    so a lock in the future is a delayed task, taken within a poll of its time.
    """

    def __init__(self, when):
        super().__init__(list_key=Conf.CLUSTER_NAME)
        self.when = when

    def enqueue(self, task):
        return self.get_connection().create(key=self.list_key, payload=task, lock=self.when).pk


def enqueue_deliveries_at(delivery_ids, when):
    """Hand delivery ids to the workers at `when` (a retry's due time), one task per chunk.

    ORM broker: a delayed task in its table, taken within a poll (0.2 s) of `when`. Redis
    broker (no delayed tasks): a once-off Schedule, which django-q2's scheduler starts on its
    next pass (it runs every 30 s). The sweep enqueues anything still due after
    DELIVERY_STALE_SECONDS either way.
    """
    size = settings.FANOUT_CHUNK_SIZE
    for start in range(0, len(delivery_ids), size):
        chunk = list(delivery_ids[start:start + size])
        if Conf.ORM:
            async_task("notifications.tasks.send_deliveries", chunk, broker=_ORMAt(when))
        else:
            Schedule.objects.create(func="notifications.tasks.send_deliveries", args=repr(chunk),
                                    schedule_type=Schedule.ONCE, next_run=when, repeats=-1,
                                    name=f"retry-{chunk[0]}-{when.timestamp():.0f}"[:100])


def enqueue_digests(recipient_ids):
    async_task("notifications.tasks.send_digests", recipient_ids)


def ensure_sweep_schedule(sender=None, using="default", **kwargs):
    """The periodic sweep (reclaims, retries, schedules). Installed after every migrate, also after a test flush."""
    Schedule.objects.using(using).update_or_create(
        name=SWEEP_SCHEDULE,
        defaults={"func": "notifications.tasks.sweep", "schedule_type": Schedule.MINUTES, "minutes": 1,
                  "repeats": -1},
    )


def ensure_retention_schedule(sender=None, using="default", **kwargs):
    """The daily retention purge (RETENTION_DELIVERY_DAYS, RETENTION_INBOX_DAYS). Installed like the sweep.

    Its first run is at 03:00 (TIME_ZONE) tomorrow, so starting a fresh install is not a purge.
    """
    first_run = (timezone.localtime() + timedelta(days=1)).replace(hour=3, minute=0, second=0, microsecond=0)
    Schedule.objects.using(using).update_or_create(
        name=RETENTION_SCHEDULE,
        defaults={"func": "notifications.tasks.retention_purge", "schedule_type": Schedule.DAILY, "repeats": -1},
        create_defaults={"func": "notifications.tasks.retention_purge", "schedule_type": Schedule.DAILY,
                         "repeats": -1, "next_run": first_run},
    )
