"""Operators' actions on notifications and deliveries: cancel, retry, resend, test a channel, purge."""

import json
import logging
import uuid

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from channels_app.base import Message, Recipient
from channels_app.constants import Channel
from channels_app.models import PushSubscription
from channels_app.registry import get_notifier

from ..engine.delivery import log_notification, message_send_now
from ..engine.queue import enqueue_deliveries
# The doors' names for the engine's retention purges (the schedule runs the same functions).
from ..engine.retention import deliveries_purge, inbox_messages_purge, retention_purge  # noqa: F401
from ..models import Delivery, InboxMessage, LedgerEntry, Notification
from .sending import notification_send

logger = logging.getLogger(__name__)
Status = Delivery.Status


def status_word(status):
    """A notification's status as a word in a sentence: "sent" in English, "envoyée" in French."""
    try:
        label = str(Notification.Status(status).label)
    except ValueError:
        return status
    return label[:1].lower() + label[1:]


def notification_cancel(notification, *, by=None):
    """Cancel a scheduled or running notification: pending deliveries are cancelled, sent ones stay.

    Returns how many queued or retrying deliveries were cancelled here; the workers sending the
    rest see the cancel at their next recording window (DELIVERY_RECORD_SECONDS), stop, and
    cancel what they had not sent.
    """
    with transaction.atomic():
        changed = Notification.objects.filter(
            pk=notification.pk,
            status__in=[Notification.Status.AWAITING_APPROVAL, Notification.Status.SCHEDULED,
                        Notification.Status.QUEUED, Notification.Status.SENDING],
        ).update(status=Notification.Status.CANCELLED, completed_at=timezone.now())
        if not changed:
            status = Notification.objects.filter(pk=notification.pk).values_list("status", flat=True).first()
            status = status or notification.status
            raise ValidationError(
                _("Notification %(id)s is %(status)s and cannot be cancelled: only a notification awaiting "
                  "approval, scheduled, queued or running can.")
                % {"id": notification.pk, "status": status_word(status)})
        cancelled = Delivery.objects.filter(
            notification=notification, status__in=[Status.QUEUED, Status.RETRYING]
        ).update(status=Status.CANCELLED, claim_token="")
        Notification.objects.filter(parent=notification, status=Notification.Status.SCHEDULED).update(
            status=Notification.Status.CANCELLED)
        # The ledger of an emergency alert records who cancelled it, in the same transaction as the cancel.
        LedgerEntry.record(notification, LedgerEntry.Event.CANCELLED, actor=by,
                           data={"deliveries_cancelled": cancelled})
    notification.refresh_from_db()
    log_notification(notification, Notification.Status.CANCELLED)
    return cancelled


def deliveries_retry(deliveries):
    """Send failed deliveries again now (an operator's decision); returns how many were queued."""
    now = timezone.now()
    ids = list(deliveries.filter(status=Status.FAILED).values_list("id", flat=True))
    if not ids:
        return 0
    with transaction.atomic():
        Delivery.objects.filter(pk__in=ids).update(status=Status.QUEUED, next_attempt_at=now, enqueued_at=now,
                                                   attempts=0, failed_at=None)
        notification_ids = set(Delivery.objects.filter(pk__in=ids).values_list("notification_id", flat=True))
        Notification.objects.filter(pk__in=notification_ids).exclude(status=Notification.Status.CANCELLED).update(
            status=Notification.Status.SENDING, completed_at=None)
        transaction.on_commit(lambda: enqueue_deliveries(ids))
    return len(ids)


# --- console and command helpers -------------------------------------------------------

def notification_resend_unacknowledged(notification, *, by):
    """Send `notification` again to the recipients who have not acknowledged it.

    Returns (new notification or None, how many people). The resend is a child of the original
    (`parent`, in its family), goes through `notification_send` like any other, and is itself to
    be acknowledged; an acknowledgement of any message of the family (the original's, a resend's)
    counts for all of them, so whoever acknowledged anything of it is not sent it again.
    """
    if not notification.requires_ack:
        raise ValidationError(_("Notification %(id)s does not ask for acknowledgement.") % {"id": notification.pk})
    acknowledged = InboxMessage.objects.of_family(notification).acknowledged().values("recipient_id")
    # People, not deliveries: one per recipient whatever their channels and escalation rungs
    # (`.order_by()` drops Delivery's default ordering, which would make every delivery distinct).
    usernames = sorted(
        Delivery.objects.filter(notification=notification).exclude(recipient_id__in=acknowledged)
        .order_by().values_list("recipient__username", flat=True).distinct()
    )
    if not usernames:
        return None, 0
    resent, _created = notification_send(
        sender=by, notifier=notification.notifier, category=notification.category, priority=notification.priority,
        title=notification.title, body=notification.body, translations=notification.translations,
        data=notification.data, channels=notification.channels, audience={"users": usernames}, deadline=notification.deadline, requires_ack=True, parent=notification,
        checkin=notification.checkin,  # the same check-in question; answers count for the original
    )
    logger.info("notification %s resent to %d unacknowledged recipients as %s", notification.pk, len(usernames),
                resent.pk, extra={"notification_id": notification.pk})
    return resent, len(usernames)


TESTABLE_CHANNELS = (Channel.EMAIL, Channel.SMS, Channel.PUSH)


def channel_send_test(*, channel, address=None, user=None, notifier="academic"):
    """Send one test message on `channel` to `address` (or `user`'s address) now, bypassing the queue.

    `address` is an email address, an E.164 phone number, or a push subscription (dict or JSON).
    Returns the provider's Outcome (ok, provider_message_id or error). Goes through the
    notifier's fixed sequence, so the circuit breaker and the performance metrics see it.
    """
    if channel not in TESTABLE_CHANNELS:
        raise ValidationError(_("Choose a channel with a provider: %(channels)s.")
                              % {"channels": ", ".join(TESTABLE_CHANNELS)})
    fields = {"user_id": getattr(user, "pk", None), "username": getattr(user, "username", "test"),
              "name": user.get_full_name() if user else "", "language": getattr(user, "language", "en")}
    subscriptions = []
    if channel == Channel.PUSH:
        if address:
            subscriptions = [json.loads(address) if isinstance(address, str) else address]
        elif user:
            subscriptions = [s.as_subscription_info() for s in PushSubscription.objects.filter(user=user)]
        if not subscriptions or not all(isinstance(s, dict) and s.get("endpoint") for s in subscriptions):
            raise ValidationError(_("No push subscription to send to."))
    elif channel == Channel.EMAIL:
        fields["email"] = address or getattr(user, "email", "")
    else:
        fields["phone"] = address or getattr(user, "phone", "")
    if not (fields.get("email") or fields.get("phone") or subscriptions):
        raise ValidationError(_("No %(channel)s address to send to.") % {"channel": channel})
    recipient = Recipient(**fields, push_subscriptions=subscriptions)  # the descriptors validate the address
    notifier_obj = get_notifier(notifier)
    now = timezone.now()
    notification = Notification(notifier=notifier, category=type(notifier_obj).categories[0],
                                title="FlashNotify test message",
                                body=f"A test of the {channel} channel, sent {now:%Y-%m-%d %H:%M} UTC.",
                                data={"severity": "test"}, channels=[channel])
    message = Message(delivery_id=0, channel=channel, recipient=recipient, notification=notification,
                      message_id=f"<test-{uuid.uuid4().hex}@flashnotify.localhost>")
    outcome = message_send_now(notifier_obj, message)
    logger.info("test message on %s: %s", channel, "sent" if outcome.ok else outcome.error,
                extra={"channel": channel, "ok": outcome.ok})
    return outcome
