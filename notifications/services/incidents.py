"""Incident threads: an emergency alert's updates and its all-clear, and publishing the incident in the CAP feed.

A follow-up is a notification of its own, sent through `notification_send` (so it is validated, checked
against the sender's reach and, when the two-person rule asks for it, held for approval like any other
emergency alert), in the original's incident with `thread_role` "update" or "all_clear". What it does to
the thread once accepted (the ledger entry on the original; the all-clear closing the incident, which stops
escalations and reminders) is the engine's `incident_follow_up_accepted`, which the fan-out runs too.
"""

import logging

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils.translation import gettext as _

from ..engine.incidents import FOLLOW_UP_ROLES, incident_follow_up_accepted, incident_original
from ..models import Incident, LedgerEntry, Notification
from .sending import EMERGENCY_PERMISSION, notification_send

logger = logging.getLogger(__name__)


class FollowUpRefused(Exception):
    """The notification cannot take a follow-up: `code` is "not_an_alert", "incident_closed" or
    "all_clear_pending"."""

    def __init__(self, message, *, code):
        super().__init__(message)
        self.message, self.code = message, code


def emergency_permission_check(user):
    if user is None or not user.has_perm(EMERGENCY_PERMISSION):
        raise PermissionDenied(_("Only someone with the emergency permission may do this."))


def notification_incident(notification):
    """The incident of `notification`; FollowUpRefused ("not_an_alert") when it is not an emergency alert."""
    if not notification.is_emergency or notification.incident_id is None:
        raise FollowUpRefused(_("Notification %(id)s is not an emergency alert: it has no incident.")
                              % {"id": notification.pk}, code="not_an_alert")
    return notification.incident


def incident_follow_up_check(original):
    """Raise FollowUpRefused unless `original` is an emergency alert whose incident is still open."""
    if notification_incident(original).closed_at is not None:
        raise FollowUpRefused(_("The all-clear of this incident was sent: it is closed and takes no more "
                                "follow-ups."), code="incident_closed")


def _one_all_clear_check(incident, kind, idempotency_key):
    """Refuse a second all-clear while one awaits approval (a replay of that one, by its key, is answered as
    sending answers a replay)."""
    if kind != Notification.ThreadRole.ALL_CLEAR:
        return
    waiting = Notification.objects.filter(incident=incident, thread_role=Notification.ThreadRole.ALL_CLEAR,
                                          status=Notification.Status.AWAITING_APPROVAL)
    if idempotency_key:
        waiting = waiting.exclude(idempotency_key=idempotency_key)
    if waiting.exists():
        raise FollowUpRefused(_("An all-clear of this incident already awaits approval: approve or refuse it "
                                "first."), code="all_clear_pending")


def incident_follow_up(original, *, sender, kind, title, body, translations=None, audience=None, channels=None,
                       api_key=None, idempotency_key=None):
    """Send an update or the all-clear (`kind`) of the incident `original` (an emergency alert) belongs to.

    Same audience and channels as the original unless given; the incident's alert status; the original's
    severity. Returns (notification, created) as `notification_send` does. Raises FollowUpRefused for a
    notification that is not an emergency alert or whose incident is closed, PermissionDenied without the
    emergency permission (or the reach of the audience), ValidationError by field.
    """
    if kind not in FOLLOW_UP_ROLES:
        raise ValidationError({"kind": [_("Choose %(choices)s.") % {"choices": ", ".join(FOLLOW_UP_ROLES)}]})
    emergency_permission_check(sender)
    with transaction.atomic():
        # One follow-up of an incident at a time: two all-clears sent at once do not both go.
        incident = Incident.objects.select_for_update().filter(pk=original.incident_id).first()
        original.incident = incident
        incident_follow_up_check(original)
        _one_all_clear_check(incident, kind, idempotency_key)
        notification, created = notification_send(
            sender=sender, notifier=Notification.EMERGENCY_NOTIFIER, category=original.category,
            priority=original.priority, title=title, body=body, translations=translations,
            audience=original.audience if audience is None else audience,
            channels=original.channels if channels is None else channels,
            data={"severity": original.data.get("severity", "")},
            alert_status=incident.alert_status, incident=incident, thread_role=kind,
            api_key=api_key, idempotency_key=idempotency_key)
        if created:
            incident_follow_up_accepted(notification)
    logger.info("incident %s: %s %s of notification %s sent by %s", incident.pk, kind, notification.pk, original.pk,
                getattr(sender, "pk", None), extra={"notification_id": notification.pk, "incident_id": incident.pk})
    return notification, created


def incident_publish(notification, *, by, public):
    """Mark the incident of `notification` (an emergency alert of it) public — anyone may read its CAP documents —
    or not; recorded in the original alert's ledger. Returns the incident."""
    emergency_permission_check(by)
    incident = notification_incident(notification)
    public = bool(public)
    with transaction.atomic():
        changed = Incident.objects.filter(pk=incident.pk).exclude(public=public).update(public=public)
        incident.public = public
        original = incident_original(incident.pk)
        if changed and original is not None:
            LedgerEntry.record(original, LedgerEntry.Event.PUBLISHED, actor=by, data={"public": public})
    if changed:
        logger.info("incident %s %s", incident.pk, "published" if public else "unpublished",
                    extra={"incident_id": incident.pk, "public": public})
    return incident
