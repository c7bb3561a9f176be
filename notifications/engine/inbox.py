"""The store of the inbox channel (settings.INBOX_STORE): rendered messages become InboxMessage rows.

Also each user's unread count, kept in the cache until a write changes it: every writer of inbox
messages calls `inbox_unread_changed` (one user's messages) or `inbox_unread_changed_for_all`.
"""

import uuid

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.db.models import Q

from ..models import InboxMessage, Notification

UNREAD_SECONDS = 60
_GENERATION = "inbox-unread-generation"  # changed when messages of many users go at once (a purge, a delete)


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
    inbox_unread_changed({m.recipient.user_id for m in messages})


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


# --- the unread count ----------------------------------------------------------------------
# With INBOX_UNREAD_CACHE (on with Redis), a user's count is cached with the generation it was counted at,
# both read in one round trip. A writer deletes the counts it changed, at once and again when its
# transaction commits; messages of many users at once (a purge, a notification deleted) change the
# generation. A count read just before a commit and stored just after it is wrong until UNREAD_SECONDS.
# On the database cache, a cache read costs as much as the count itself: the count is read every time.

def _count_key(user_id):
    return f"inbox-unread:{user_id}"


def inbox_unread_count(user_id):
    """How many of the user's inbox messages are unread: from the cache, or counted (and cached) once."""
    if not settings.INBOX_UNREAD_CACHE:
        return InboxMessage.objects.filter(recipient_id=user_id, read_at__isnull=True).count()
    found = cache.get_many([_GENERATION, _count_key(user_id)])
    generation, cached = found.get(_GENERATION), found.get(_count_key(user_id))
    if cached is not None and cached[0] == generation:
        return cached[1]
    count = InboxMessage.objects.filter(recipient_id=user_id, read_at__isnull=True).count()
    cache.set(_count_key(user_id), (generation, count), UNREAD_SECONDS)
    return count


def inbox_unread_changed(user_ids):
    """The inbox messages of `user_ids` were written (added, read, marked unread): their counts are recounted."""
    keys = [_count_key(pk) for pk in user_ids]
    if keys and settings.INBOX_UNREAD_CACHE:
        _change(lambda: cache.delete_many(keys))


def inbox_unread_changed_for_all(sender=None, **kwargs):
    """Messages of any number of users went (a purge, a notification deleted): every count is recounted.

    Also the receiver of Notification's post_delete, whose cascade deletes its inbox messages."""
    if settings.INBOX_UNREAD_CACHE:
        _change(lambda: cache.set(_GENERATION, uuid.uuid4().hex, timeout=None))


def _change(write):
    write()
    if transaction.get_connection().in_atomic_block:
        transaction.on_commit(write)
