"""The store of the inbox channel (settings.INBOX_STORE): rendered messages become InboxMessage rows."""

from django.db.models import Q

from ..models import InboxMessage, Notification


def inbox_store(messages):
    """Write one InboxMessage per notification and recipient, in bulk; a message already there is kept.

    A resend (a notification with a family) that would put the very same title and body in a
    recipient's inbox as a message of its family already there is not written twice: that message is
    marked unread again instead, so the student has one alert to acknowledge, not two identical ones.
    """
    duplicates = _family_duplicates([m for m in messages if m.notification.family_root_id])
    InboxMessage.objects.bulk_create(
        [InboxMessage(notification_id=m.notification.pk, recipient_id=m.recipient.user_id,
                      title=m.content["title"][:200], body=m.content["body"], category=m.notification.category)
         for m in messages if (m.notification.pk, m.recipient.user_id) not in duplicates],
        ignore_conflicts=True,
    )
    if duplicates:
        InboxMessage.objects.filter(pk__in=duplicates.values(), acknowledged_at__isnull=True).update(read_at=None)


def _family_duplicates(messages):
    """{(notification id, recipient id): id of the family's identical message already in that inbox}."""
    if not messages:
        return {}
    wanted = {(m.notification.family_root_id, m.recipient.user_id): m for m in messages}
    roots = {root for root, _ in wanted}
    family = Notification.objects.filter(Q(pk__in=roots) | Q(family_root_id__in=roots)).values("pk")
    found = {}
    rows = (InboxMessage.objects.filter(notification__in=family, recipient_id__in={r for _, r in wanted})
            .exclude(notification_id__in={m.notification.pk for m in messages})
            .values_list("pk", "recipient_id", "title", "body", "notification_id", "notification__family_root_id"))
    for pk, recipient_id, title, body, notification_id, family_root_id in rows:
        message = wanted.get((family_root_id or notification_id, recipient_id))
        if message and message.content["title"][:200] == title and message.content["body"] == body:
            found[(message.notification.pk, recipient_id)] = pk
    return found
