"""Incident threads: what an accepted update or all-clear does to its thread.

`incident_follow_up_accepted` runs when a follow-up is accepted: at once when the service sends it,
and again at the start of its fan-out (so a follow-up that waited, e.g. for a second person's
approval, or one sent by another door, takes effect too). It is idempotent: the original alert's
ledger gets one UPDATE or ALL_CLEAR entry, and the all-clear closes the incident once, which
cancels the thread's pending escalation messages and its scheduled reminders, with a reason.
"""

import logging

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from ..models import Delivery, Incident, LedgerEntry, Notification
from .delivery import notification_refresh_status

logger = logging.getLogger(__name__)
ThreadRole = Notification.ThreadRole
FOLLOW_UP_ROLES = (ThreadRole.UPDATE, ThreadRole.ALL_CLEAR)
FOLLOW_UP_EVENTS = {ThreadRole.UPDATE: LedgerEntry.Event.UPDATE, ThreadRole.ALL_CLEAR: LedgerEntry.Event.ALL_CLEAR}


def incident_original(incident_id):
    """The alert that opened the incident (its first notification in the thread)."""
    thread = Notification.objects.filter(incident_id=incident_id)
    return thread.filter(thread_role=ThreadRole.ALERT).order_by("id").first() or thread.order_by("id").first()


def incident_follow_up_accepted(follow_up, *, now=None):
    """Record `follow_up` (an update or all-clear that is no longer waiting) on the original alert; an all-clear
    closes the incident and stops the thread. Returns True when this call did it, False when already done."""
    if not follow_up.incident_id or follow_up.thread_role not in FOLLOW_UP_ROLES:
        return False
    if follow_up.status in (Notification.Status.AWAITING_APPROVAL, Notification.Status.CANCELLED):
        return False
    now = now or timezone.now()
    original = incident_original(follow_up.incident_id)
    event = FOLLOW_UP_EVENTS[follow_up.thread_role]
    with transaction.atomic():
        stopped = {}
        if follow_up.thread_role == ThreadRole.ALL_CLEAR:
            if not Incident.objects.filter(pk=follow_up.incident_id, closed_at__isnull=True).update(closed_at=now):
                return False
            stopped = incident_thread_stop(follow_up, now=now)
        elif original is None or LedgerEntry.objects.filter(
                notification_id=original.pk, event=event, data__follow_up_id=follow_up.pk).exists():
            return False
        if original is not None and original.pk != follow_up.pk:
            sender = follow_up.sender
            LedgerEntry.record(original, event, actor=sender, at=now, data={
                "follow_up_id": follow_up.pk, "title": follow_up.title,
                "sender": sender.get_username() if sender else "", **stopped})
    logger.info("incident %s: %s %s accepted", follow_up.incident_id, follow_up.thread_role, follow_up.pk,
                extra={"notification_id": follow_up.pk, "incident_id": follow_up.incident_id, **stopped})
    return True


def incident_thread_stop(all_clear, *, now=None):
    """Cancel what the thread of `all_clear` still had coming: escalation messages not yet handed to a worker
    and scheduled reminders. Returns {"escalations_cancelled": n, "reminders_cancelled": [ids]}."""
    now = now or timezone.now()
    reason = f"all clear sent (notification {all_clear.pk}): the incident is closed"
    thread = list(Notification.objects.filter(incident_id=all_clear.incident_id).exclude(pk=all_clear.pk)
                  .values_list("pk", flat=True))
    family = Notification.objects.filter(Q(pk__in=thread) | Q(family_root_id__in=thread) | Q(parent_id__in=thread))
    escalations = Delivery.objects.filter(
        notification__in=family.values("pk"), escalation_level__gte=1,
        status__in=[Delivery.Status.QUEUED, Delivery.Status.RETRYING])
    touched = set(escalations.values_list("notification_id", flat=True).distinct())
    escalations_cancelled = escalations.update(status=Delivery.Status.CANCELLED, reason=Delivery.Reason.CANCELLED,
                                               skip_reason=reason[:200], claim_token="")
    for notification in Notification.objects.filter(pk__in=touched):
        notification_refresh_status(notification)  # an escalation that was all it still had to send is over
    reminders = list(Notification.objects.filter(
        Q(parent_id__in=thread) | Q(family_root_id__in=thread), status=Notification.Status.SCHEDULED))
    Notification.objects.filter(pk__in=[r.pk for r in reminders], status=Notification.Status.SCHEDULED).update(
        status=Notification.Status.CANCELLED, completed_at=now)
    for reminder in reminders:
        LedgerEntry.record(reminder, LedgerEntry.Event.CANCELLED, at=now,
                           data={"reason": reason, "all_clear_id": all_clear.pk})
        logger.info("reminder %s cancelled: %s", reminder.pk, reason, extra={"notification_id": reminder.pk})
    return {"escalations_cancelled": escalations_cancelled, "reminders_cancelled": [r.pk for r in reminders]}


def incident_closed(notification):
    """Whether `notification` belongs to an incident that its all-clear closed."""
    return bool(notification.incident_id) and Incident.objects.filter(
        pk=notification.incident_id, closed_at__isnull=False).exists()
