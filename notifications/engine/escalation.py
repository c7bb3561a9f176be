"""Escalation: a notification that must be acknowledged goes again, on the next channel, to whoever
has not acknowledged it within its escalation delay: the notification's own
(`escalation_delay_minutes`) or its notifier's `escalation_delay`.

The ladder is the notification's own (`escalation_ladder`) or its notifier's `Notifier.escalation`,
e.g. (push, SMS, email): the first send is level 0; level k (k ≥ 1) sends on `ladder[k]`. Each level
is a new Delivery with `escalation_level = k`
(deliveries are unique per notification, recipient, channel and level), so the history of every
attempt stays. A rung the recipient cannot receive on is recorded as skipped with its reason, and
the next rung is tried at once. The delay runs from the last message sent to (or failed for) the
recipient; nothing escalates while one of their deliveries is still pending.
"""

import logging
from datetime import timedelta

from django.db import transaction
from django.db.models import Count, Max, Q
from django.db.models.functions import Coalesce
from django.utils import timezone

from accounts.models import User
from channels_app.constants import Channel
from channels_app.models import PushSubscription
from ..models import Delivery, InboxMessage, Notification, Preference
from channels_app.registry import NotificationMeta, get_notifier

from .incidents import incident_closed
from .planning import DeliveryPlanner, quiet_hours_end

logger = logging.getLogger(__name__)
Status = Delivery.Status
# Acknowledgement links last 7 days (views.ACK_LINK_MAX_AGE): nothing escalates after that.
ESCALATION_WINDOW = timedelta(days=7)


def escalation_ladder(notifier, notification=None):
    """The channels to climb, in order: the notification's own ladder when it has one, else its kind's
    (`Notifier.escalation`); only channels the notifier sends on."""
    ladder = (notification.escalation_ladder if notification is not None else None) or notifier.escalation
    return [channel for channel in ladder if channel in notifier.channels]


def escalation_delay(notifier, notification=None):
    """How long to wait for an acknowledgement: the notification's own delay, else its kind's."""
    minutes = notification.escalation_delay_minutes if notification is not None else None
    return timedelta(minutes=minutes) if minutes else notifier.escalation_delay


def escalations_run(*, now=None):
    """(Sweep) Create the next level of deliveries for everyone overdue; returns {"escalated": n}."""
    now = now or timezone.now()
    escalated = 0
    with_ladder = [key for key, cls in NotificationMeta.registry.items() if len(escalation_ladder(cls)) > 1]
    # Only the first of a family climbs the ladder: a resend (or a reminder) of it escalating on its own
    # would send a second SMS to whoever has not acknowledged either. Any notification asking for an
    # acknowledgement whose ladder, its own or its kind's, has a rung after the first.
    notifications = Notification.objects.filter(
        Q(notifier__in=with_ladder) | Q(escalation_ladder__1__isnull=False),
        requires_ack=True, fanned_out_at__isnull=False,
        started_at__gte=now - ESCALATION_WINDOW, family_root__isnull=True,
    ).exclude(status=Notification.Status.CANCELLED).exclude(
        incident__closed_at__isnull=False,  # its all-clear was sent
    ).select_related("sender")
    for notification in notifications:
        notifier = get_notifier(notification.notifier)
        if len(escalation_ladder(notifier, notification)) < 2:
            continue
        if notification.started_at > now - escalation_delay(notifier, notification):
            continue
        escalated += notification_escalate(notification, notifier=notifier, now=now)
    return {"escalated": escalated} if escalated else {}


def notification_escalate(notification, *, notifier=None, now=None):
    """Escalate one notification for its overdue, unacknowledged recipients; returns how many escalated."""
    now = now or timezone.now()
    if incident_closed(notification):
        return 0  # its all-clear was sent: nobody is chased about an incident that is over
    notifier = notifier or get_notifier(notification.notifier)
    ladder = escalation_ladder(notifier, notification)
    overdue_before = now - escalation_delay(notifier, notification)
    acknowledged = InboxMessage.objects.of_family(notification).acknowledged()  # a resend's counts too
    rows = (Delivery.objects.filter(notification=notification)
            .exclude(recipient_id__in=acknowledged.values("recipient_id"))
            .values("recipient_id")
            .annotate(level=Max("escalation_level"), last=Max(Coalesce("sent_at", "failed_at")),
                      pending=Count("id", filter=Q(status__in=Delivery.PENDING_STATUSES)))
            .order_by())
    levels = {
        row["recipient_id"]: row["level"] for row in rows
        if not row["pending"] and row["level"] < len(ladder) - 1
        and (row["last"] or notification.started_at) <= overdue_before
    }
    if not levels:
        return 0
    users = list(User.objects.filter(pk__in=levels, is_active=True).only(
        "pk", "email", "phone", "phone_verified_at", "timezone", "quiet_hours_start", "quiet_hours_end",
        "sms_stopped_at"))
    user_ids = [user.pk for user in users]
    planner = DeliveryPlanner(notification, notifier, now=now)
    preferences = {} if planner.mandatory else {
        (p.user_id, p.channel): (p.enabled, p.digest)
        for p in Preference.objects.filter(user_id__in=user_ids, category=notification.category)
    }
    with_push = set()
    if Channel.PUSH in ladder:
        with_push = set(PushSubscription.objects.filter(user_id__in=user_ids).values_list("user_id", flat=True))

    planned, escalated = [], 0
    for user in users:
        for level in range(levels[user.pk] + 1, len(ladder)):
            channel = ladder[level]
            reason, text = planner.unreachable(user, channel, with_push)
            refusal = planner.refusal(user, channel, preferences)
            if reason or refusal:
                planned.append(Delivery(notification=notification, recipient=user, channel=channel,
                                        escalation_level=level, status=Status.SKIPPED, reason=reason or refusal,
                                        skip_reason=f"escalation: {text or 'turned off for this category'}",
                                        next_attempt_at=now))
                continue
            quiet_end = None if planner.urgent else quiet_hours_end(user, now)
            planned.append(Delivery(notification=notification, recipient=user, channel=channel,
                                    escalation_level=level, status=Status.QUEUED, next_attempt_at=quiet_end or now))
            escalated += 1
            break
    with transaction.atomic():
        Delivery.objects.bulk_create(planned, ignore_conflicts=True)
        if escalated:
            # Sending again: the sweep enqueues the new deliveries and finalizes the status after.
            Notification.objects.filter(pk=notification.pk).exclude(status=Notification.Status.CANCELLED).update(
                status=Notification.Status.SENDING, completed_at=None)
    logger.info("notification %s escalated for %d recipient(s)", notification.pk, escalated,
                extra={"notification_id": notification.pk, "escalated": escalated})
    return escalated
