"""Writes on a recipient's inbox messages."""

import logging

from django.utils import timezone

from ..engine.inbox import inbox_unread_changed
from ..models import InboxMessage

logger = logging.getLogger(__name__)


def message_mark_read(message):
    if message.read_at is None:
        message.read_at = timezone.now()
        InboxMessage.objects.filter(pk=message.pk, read_at__isnull=True).update(read_at=message.read_at)
        inbox_unread_changed([message.recipient_id])
    return message


def message_acknowledge(message):
    """Acknowledge `message` and, with it, the recipient's messages of the whole family (the original, its
    resends, its reminders): acknowledging any one of them acknowledges the notification and stops its
    escalation (notifications.engine.escalation reads the family too)."""
    if message.acknowledged_at is None:
        now = timezone.now()
        message.acknowledged_at = now
        message.read_at = message.read_at or now
        family = InboxMessage.objects.of_family(message.notification).filter(
            recipient_id=message.recipient_id, acknowledged_at__isnull=True)
        family.filter(read_at__isnull=True).update(read_at=now)
        family.update(acknowledged_at=now)
        inbox_unread_changed([message.recipient_id])
        logger.info("notification %s acknowledged by user %s", message.notification_id, message.recipient_id,
                    extra={"notification_id": message.notification_id, "user_id": message.recipient_id})
    return message
