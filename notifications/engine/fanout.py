"""Fan-out: the audience streamed into pages, each page planned once and handed to the workers.

The audience is read as ids and cut into pages (`FanoutPage`, FANOUT_CHUNK_SIZE recipients
each). Every worker may plan a page (`fanout_page_plan`): it writes the page's deliveries in
one `bulk_create` and sends the page's first chunk itself; the rest goes to the queue.
"""

import itertools
import logging
import uuid

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.db.models import Sum
from django.utils import timezone

from channels_app.constants import Channel
from channels_app.decorators import flush_metrics
from channels_app.registry import get_notifier

from ..models import Delivery, FanoutPage, Notification
from .audience import audience_users, page_users
from .incidents import incident_follow_up_accepted
from .delivery import claimed_deliveries_send, log_notification, notification_refresh_status
from .inbox_sets import fanout_page_size, inbox_set_for
from .planning import RECIPIENT_FIELDS, DeliveryPlanner
from .queue import enqueue_deliveries, enqueue_fanout_pages

logger = logging.getLogger(__name__)
Status = Delivery.Status


def notification_fan_out(notification_id, *, now=None, spread=False):
    """Expand the audience into deliveries, page by page, and hand the deliveries to the workers.

    The audience is streamed as ids and cut into pages (`FanoutPage`, FANOUT_CHUNK_SIZE
    recipients each). With `spread` (the worker task), each page is planned — and its first
    chunk sent, its inbox written — by a task of its own, so every worker plans (an inbox-only
    notification's pages hold FANOUT_INBOX_PAGE_SIZE recipients); otherwise pages are planned
    here, in order. Resumable: pages are saved with the cursor, are unique per start, and are
    planned once; deliveries are unique per recipient and channel. A rerun after a crash
    neither loses nor doubles anything.
    """
    now = now or timezone.now()
    started = Notification.objects.filter(
        pk=notification_id, status__in=[Notification.Status.QUEUED, Notification.Status.SCHEDULED]
    ).update(status=Notification.Status.SENDING, started_at=now)
    notification = Notification.objects.select_related("sender").get(pk=notification_id)
    if notification.status != Notification.Status.SENDING or notification.fanned_out_at:
        return notification
    audience = audience_users(notification.audience).order_by("pk").values_list("pk", flat=True)
    if started:
        # The audience's size, counted once: what the console reports progress against, fixed while pages are planned.
        notification.recipient_count = audience.count()
        Notification.objects.filter(pk=notification_id).update(recipient_count=notification.recipient_count)
        log_notification(notification, Notification.Status.SENDING)
        _inactive_named_skip(notification, now)
        # An update or all-clear that waited (for approval, or came by another door) takes effect now, once.
        incident_follow_up_accepted(notification, now=now)
    # Page tasks (spread) write an inbox-only notification's inbox as sets, in larger pages.
    size = fanout_page_size(notification, get_notifier(notification.notifier)) if spread else settings.FANOUT_CHUNK_SIZE
    cursor = notification.fanout_cursor
    batch = 20 if spread else 1  # pages read (ids only, one query), saved and handed out together
    while True:
        block = iter(audience.filter(pk__gt=cursor)[: size * batch])
        pages = []
        while ids := list(itertools.islice(block, size)):
            pages.append(FanoutPage(notification=notification, after_pk=cursor, last_pk=ids[-1], size=len(ids),
                                    enqueued_at=timezone.now()))
            cursor = ids[-1]
        if not pages:
            break
        with transaction.atomic():
            if Notification.objects.filter(pk=notification_id, status=Notification.Status.CANCELLED).exists():
                return notification
            FanoutPage.objects.bulk_create(pages, ignore_conflicts=True)
            Notification.objects.filter(pk=notification_id).update(fanout_cursor=cursor)
            saved = list(FanoutPage.objects.filter(notification=notification, after_pk__in=[p.after_pk for p in pages],
                                                   planned_at__isnull=True).values_list("pk", flat=True))
            if spread:
                transaction.on_commit(lambda saved=saved: enqueue_fanout_pages(saved))
        if not spread:
            for page_id in saved:
                fanout_page_plan(page_id, now=now, send_first_chunk=False)
    last = FanoutPage.objects.filter(notification=notification).order_by("-after_pk").first()
    if last is None:  # an empty audience
        _fan_out_finish(notification)
    else:
        FanoutPage.objects.filter(pk=last.pk).update(is_last=True)
        _fan_out_finish_if_planned(notification)
    return notification


def fanout_page_plan(page_id, *, now=None, send_first_chunk=True):
    """Plan one page of a fan-out (once), then send its first chunk here and enqueue the rest."""
    now = now or timezone.now()
    page = FanoutPage.objects.select_related("notification__sender").get(pk=page_id)
    notification = page.notification
    if page.planned_at or notification.status != Notification.Status.SENDING:
        return 0
    planner = DeliveryPlanner(notification, get_notifier(notification.notifier), now=now)
    audience = page_users(page)
    # A page task that sends writes the inbox of the page's plain recipients as a set (sent at once); the
    # planner and the workers do the rest.
    inbox_set = inbox_set_for(planner, page) if send_first_chunk else None
    if inbox_set and planner.channels == [Channel.INBOX]:
        users = [] if planner.urgent else list(audience.exclude(planner.plain_q()).order_by("pk")
                                               .only(*RECIPIENT_FIELDS))
    else:
        users = list(audience.order_by("pk").only(*RECIPIENT_FIELDS))
    # The first chunk is written already claimed by this task (as deliveries_send would claim it), and sent
    # here: no claim UPDATE, no second look for its ids.
    token = uuid.uuid4().hex if send_first_chunk else ""
    with transaction.atomic():
        if not FanoutPage.objects.filter(pk=page_id, planned_at__isnull=True).update(planned_at=now):
            return 0  # another worker planned it
        if not _still_sending(notification):
            transaction.set_rollback(True)  # cancelled since the look above: the page writes nothing
            return 0
        planned = planner.plan(users)
        first = settings.FANOUT_CHUNK_SIZE if send_first_chunk else 0
        for delivery in planned:  # those due now are sent or handed to the workers below
            if delivery.status == Status.QUEUED and not delivery.digest and delivery.next_attempt_at <= now:
                delivery.enqueued_at = now
                if first:
                    first -= 1
                    delivery.status, delivery.claim_token, delivery.claimed_at = Status.SENDING, token, now
                    delivery.attempts = 1
        Delivery.objects.bulk_create(planned, ignore_conflicts=True)
        written = inbox_set.write(now) if inbox_set else 0
        rows = ids = []
        if planned or (inbox_set and inbox_set.missing):
            # Rows made by an earlier, interrupted run keep their own enqueued_at (the sweep owns them).
            due = Delivery.objects.filter(notification=notification, recipient_id__gt=page.after_pk,
                                          recipient_id__lte=page.last_pk, status=Status.QUEUED, enqueued_at=now)
            if token:
                due |= Delivery.objects.filter(claim_token=token, status=Status.SENDING)
            rows = list(due.values_list("id", "status"))
            ids = [pk for pk, status in rows if status == Status.QUEUED]
            transaction.on_commit(lambda: enqueue_deliveries(ids))
    _fan_out_finish_if_planned(notification)
    if inbox_set:
        flush_metrics()
    if len(ids) < len(rows):
        claimed_deliveries_send(token, now=now)
    return len(rows) + written


def _still_sending(notification):
    """Inside a page's transaction, after its first write: whether the notification is still sending, kept so
    until the page commits. A cancel (an UPDATE of the notification's row) then waits for the page and cancels
    what the page queued; the inbox the page wrote as sent was sent before the cancel. On PostgreSQL a share
    lock on the row (pages of one notification do not wait for each other); on SQLite the page's write lock
    already keeps every other writer out until it commits."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(f'SELECT 1 FROM "{Notification._meta.db_table}" WHERE "id" = %s AND "status" = %s '
                           f"FOR SHARE", [notification.pk, Notification.Status.SENDING])
            return cursor.fetchone() is not None
    return Notification.objects.filter(pk=notification.pk, status=Notification.Status.SENDING).exists()


def _inactive_named_skip(notification, now):
    """Inactive users the audience names by username are not in it; record why they get nothing.

    Only users named explicitly: an inactive member of a cohort or a role was not asked for by name,
    and finding them would cost a scan of the cohort, so they are left out silently.
    """
    usernames = notification.audience.get("users")
    if not usernames:
        return
    inactive = list(get_user_model().objects.filter(username__in=usernames, is_active=False).only("pk"))
    if inactive:
        planner = DeliveryPlanner(notification, get_notifier(notification.notifier), now=now)
        Delivery.objects.bulk_create(planner.plan_inactive(inactive), ignore_conflicts=True)


def _fan_out_finish_if_planned(notification):
    """Once the last page is known and every page is planned, the fan-out is done."""
    pages = FanoutPage.objects.filter(notification=notification)
    if pages.filter(is_last=True).exists() and not pages.filter(planned_at__isnull=True).exists():
        _fan_out_finish(notification)


def _fan_out_finish(notification):
    # The pages are who was fanned out to: the count made at the start, unless the audience changed meanwhile.
    planned = FanoutPage.objects.filter(notification=notification).aggregate(n=Sum("size"))["n"] or 0
    if Notification.objects.filter(pk=notification.pk, fanned_out_at__isnull=True).update(
            fanned_out_at=timezone.now(), recipient_count=planned):
        notification.refresh_from_db()
        logger.info("notification %s fanned out to %d recipients", notification.pk, notification.recipient_count,
                    extra={"notification_id": notification.pk})
        notification_refresh_status(notification)


