"""The sweep, run every minute on a worker: nothing pending is forgotten, whatever the broker lost.

It takes back deliveries whose worker died (lease expired), starts due schedules, resumes
fan-outs and pages whose task was lost, escalates unacknowledged alerts, hands out due
digests and retries, and finalises notifications whose last task ended badly.
"""

import logging
from datetime import timedelta

from django.conf import settings
from django.db.models import F, Q
from django.utils import timezone

from ..models import Delivery, FanoutPage, Notification
from .delivery import log_notification, notification_refresh_status
from .digest import digests_enqueue
from .escalation import escalations_run
from .queue import enqueue_deliveries, enqueue_fan_out, enqueue_fanout_pages

logger = logging.getLogger(__name__)
Status = Delivery.Status


def deliveries_sweep(*, now=None):
    """Run periodically: reclaim deliveries of dead workers, start due schedules and retries.

    Returns counts of what it did.
    """
    now = now or timezone.now()
    done = {}
    lease_expired = Delivery.objects.filter(status=Status.SENDING,
                                            claimed_at__lt=now - timedelta(seconds=settings.DELIVERY_LEASE_SECONDS))
    expired = list(lease_expired.values_list("id", "notification_id")[:10_000])
    expired_ids = [pk for pk, _ in expired]
    if expired_ids:
        # The claim counted the attempt: one that has used the last attempt fails here, so a
        # chunk that kills its task each time cannot cycle forever.
        done["reclaimed"] = Delivery.objects.filter(
            pk__in=expired_ids, status=Status.SENDING, attempts__lt=settings.DELIVERY_MAX_ATTEMPTS).update(
            # Due since it was claimed: a sweep run at a chosen `now` leaves it due for the workers too.
            status=Status.RETRYING, next_attempt_at=F("claimed_at"), enqueued_at=None, claim_token="",
            reclaims=F("reclaims") + 1,
            last_error="taken back from a worker that stopped while sending (a duplicate is possible)",
        )
        given_up = Delivery.objects.filter(pk__in=expired_ids, status=Status.SENDING).update(
            status=Status.FAILED, failed_at=now, claim_token="", reclaims=F("reclaims") + 1,
            last_error=f"gave up after {settings.DELIVERY_MAX_ATTEMPTS} attempts: the worker stopped while "
                       "sending each time (a duplicate is possible)",
        )
        if given_up:
            done["reclaimed_gave_up"] = given_up
            logger.warning("%d deliveries failed: their worker stopped on every attempt", given_up)
        for pk, notification_id in expired if done["reclaimed"] else ():
            logger.debug("delivery %s reclaimed", pk, extra={"delivery_id": pk, "notification_id": notification_id,
                                                             "status": Status.RETRYING})
        if done["reclaimed"]:
            logger.warning("reclaimed %d deliveries from dead workers", done["reclaimed"],
                           extra={"notification_ids": sorted({n for _, n in expired})})

    started = []
    for notification in Notification.objects.filter(status=Notification.Status.SCHEDULED, scheduled_for__lte=now):
        if Notification.objects.filter(pk=notification.pk, status=Notification.Status.SCHEDULED).update(
                status=Notification.Status.QUEUED):
            log_notification(notification, Notification.Status.QUEUED)
            enqueue_fan_out(notification.pk)
            started.append(notification.pk)
            done["scheduled_started"] = done.get("scheduled_started", 0) + 1

    # Fan-outs whose task was lost (Redis broker, dead worker) are resumed from their cursor.
    stale = now - timedelta(seconds=settings.DELIVERY_STALE_SECONDS)
    for notification_id in Notification.objects.filter(
            # Queued since its creation, or since its schedule came due (not those just started above).
            Q(status=Notification.Status.QUEUED, scheduled_for__isnull=True, created_at__lt=stale)
            | Q(status=Notification.Status.QUEUED, scheduled_for__lt=stale)
            | Q(status=Notification.Status.SENDING, fanned_out_at__isnull=True, started_at__lt=stale)
    ).exclude(pk__in=started).values_list("pk", flat=True):
        enqueue_fan_out(notification_id)
        done["fan_outs_resumed"] = done.get("fan_outs_resumed", 0) + 1
    # Pages whose planning task was lost are handed out again (planning one twice is a no-op).
    pages = list(FanoutPage.objects.filter(planned_at__isnull=True, enqueued_at__lt=stale,
                                           notification__status=Notification.Status.SENDING)
                 .values_list("pk", flat=True)[:10_000])
    if pages:
        FanoutPage.objects.filter(pk__in=pages).update(enqueued_at=now)
        enqueue_fanout_pages(pages)
        done["pages_enqueued"] = len(pages)

    done.update(escalations_run(now=now))  # before the enqueue below, which sends what it creates
    done.update(digests_enqueue(now=now))

    due = Delivery.objects.filter(
        Q(enqueued_at__isnull=True) | Q(enqueued_at__lt=stale),
        status__in=[Status.QUEUED, Status.RETRYING], next_attempt_at__lte=now, digest=False,
    )
    ids = list(due.order_by("next_attempt_at").values_list("id", flat=True)[:50_000])
    if ids:
        for start in range(0, len(ids), 5000):
            Delivery.objects.filter(pk__in=ids[start:start + 5000]).update(enqueued_at=now)
        enqueue_deliveries(ids)
        done["enqueued"] = len(ids)

    # Notifications whose last deliveries ended in a failed or reclaimed task.
    for notification in Notification.objects.filter(status=Notification.Status.SENDING,
                                                    fanned_out_at__isnull=False):
        notification_refresh_status(notification)
    return done


