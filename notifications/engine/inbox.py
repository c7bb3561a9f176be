"""The store of the inbox channel (settings.INBOX_STORE): rendered messages become InboxMessage rows."""

from ..models import InboxMessage


def inbox_store(messages):
    """Write one InboxMessage per notification and recipient, in bulk; a message already there is kept."""
    InboxMessage.objects.bulk_create(
        [InboxMessage(notification_id=m.notification.pk, recipient_id=m.recipient.user_id,
                      title=m.content["title"][:200], body=m.content["body"], category=m.notification.category)
         for m in messages],
        ignore_conflicts=True,
    )
