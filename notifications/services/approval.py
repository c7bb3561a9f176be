"""The two-person rule: a free-text emergency alert drafted by one person goes once a second approves it.

`notification_send` stores such an alert as AWAITING_APPROVAL (sending.needs_approval); these are
the two ways out of that state besides a cancel. Both change the status with a conditional UPDATE
(from AWAITING_APPROVAL only), so two approvers clicking at once send it once: the second is refused.
"""

import logging

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from ..engine.delivery import log_notification
from ..models import Incident, LedgerEntry, Notification
from .operations import status_word
from .sending import emergency_permission_check, notification_hand_over

logger = logging.getLogger(__name__)
REASON_MAX = 1000


def person_label(user):
    if user is None:
        return ""
    name = user.get_full_name()
    return f"{name} ({user.username})" if name else user.username


def _second_person_check(notification, by):
    emergency_permission_check(by)
    if by is None:
        raise PermissionDenied(_("An approval is a person's decision."))
    if notification.sender_id == by.pk:
        raise PermissionDenied(_("You drafted this alert: a second person with the emergency permission must "
                                 "approve or refuse it."))


def _not_awaiting(notification):
    status = Notification.objects.filter(pk=notification.pk).values_list("status", flat=True).first()
    return ValidationError(
        _("Notification %(id)s is %(status)s: only an alert awaiting approval can be approved or refused.")
        % {"id": notification.pk, "status": status_word(status or notification.status)},
        code="not_awaiting_approval")


def _incident_open_check(notification):
    """An update or all-clear waiting for approval goes only while its incident is open: once the all-clear went,
    "still dangerous" must not follow "all clear". The incident's row is locked until the approval commits, so
    an all-clear closing it meanwhile waits for this one (and the update goes before it)."""
    if notification.incident_id is None or notification.thread_role not in (Notification.ThreadRole.UPDATE,
                                                                            Notification.ThreadRole.ALL_CLEAR):
        return
    incident = Incident.objects.select_for_update().get(pk=notification.incident_id)
    if incident.closed_at is not None:
        raise ValidationError(_("The all-clear of this incident was sent: this follow-up can no longer go. Refuse "
                                "it, saying why."), code="incident_closed")


def notification_approve(notification, *, by):
    """Approve an emergency alert awaiting approval and hand it to the fan-out, as notification_send would have
    (queued now, or scheduled for its time). Refused (PermissionDenied) without the emergency permission and
    to the person who drafted it; ValidationError (code not_awaiting_approval) when it is not awaiting."""
    _second_person_check(notification, by)
    now = timezone.now()
    status = (Notification.Status.SCHEDULED if notification.scheduled_for and notification.scheduled_for > now
              else Notification.Status.QUEUED)
    with transaction.atomic():
        _incident_open_check(notification)
        changed = Notification.objects.filter(
            pk=notification.pk, status=Notification.Status.AWAITING_APPROVAL,
        ).exclude(sender=by).update(status=status, approved_by=by, approved_at=now)
        if not changed:
            raise _not_awaiting(notification)
        notification.refresh_from_db()
        LedgerEntry.record(notification, LedgerEntry.Event.APPROVED, actor=by, data={
            "drafted_by": person_label(notification.sender), "approved_by": person_label(by)})
        notification_hand_over(notification, actor=by, now=now)
    logger.info("notification %s approved by user %s", notification.pk, by.pk,
                extra={"notification_id": notification.pk, "approved_by": by.pk})
    log_notification(notification, notification.status)
    return notification


def notification_reject(notification, *, by, reason):
    """Refuse an emergency alert awaiting approval: it is cancelled, never sent, with the reason kept for staff
    (Notification.refusal_reason) and in the ledger with both names."""
    _second_person_check(notification, by)
    reason = (reason or "").strip()
    if not reason:
        raise ValidationError({"reason": [_("Say why the alert is refused: the person who drafted it reads it.")]})
    if len(reason) > REASON_MAX:
        raise ValidationError({"reason": [_("The reason is at most %(max)d characters.") % {"max": REASON_MAX}]})
    now = timezone.now()
    with transaction.atomic():
        changed = Notification.objects.filter(
            pk=notification.pk, status=Notification.Status.AWAITING_APPROVAL,
        ).exclude(sender=by).update(status=Notification.Status.CANCELLED, completed_at=now, refused_by=by,
                                    refusal_reason=reason)
        if not changed:
            raise _not_awaiting(notification)
        notification.refresh_from_db()
        LedgerEntry.record(notification, LedgerEntry.Event.APPROVAL_REFUSED, actor=by, data={
            "drafted_by": person_label(notification.sender), "refused_by": person_label(by), "reason": reason})
    logger.info("notification %s refused by user %s", notification.pk, by.pk,
                extra={"notification_id": notification.pk, "refused_by": by.pk})
    log_notification(notification, Notification.Status.CANCELLED)
    return notification
