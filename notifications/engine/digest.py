"""The daily digest: low-priority email a user chose to receive once a day, one email per category.

The planner holds such deliveries (`Delivery.digest`, due at the user's digest hour). The
sweep hands recipients with due digest deliveries to the workers (`digests_enqueue`); a worker
claims them, renders ONE email per recipient and category through DigestNotifier (the normal
notifier sequence: render → EmailMixin.send_email → outcomes), and records that email's outcome
on every delivery it gathered: sent together, retried together, failed together.
"""

import dataclasses
import logging
import uuid
from datetime import timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db.models import F, Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from channels_app.base import Message, Notifier, Recipient
from channels_app.constants import Category, Channel, Priority
from channels_app.decorators import flush_metrics, track_performance
from channels_app.mixins import EmailMixin
from channels_app.registry import get_notifier

from ..models import Delivery, Notification
from .delivery import action_url, delivery_fail, notification_refresh_status, outcomes_record
from .queue import enqueue_digests

logger = logging.getLogger(__name__)
Status = Delivery.Status
DIGEST_RECIPIENTS_PER_TASK = 200
# Without compiled catalogues the category names are given here in French.
CATEGORY_LABELS = {
    "fr": {
        Category.ANNOUNCEMENT: "Annonces de cours", Category.DEADLINE: "Rappels d'échéance",
        Category.GRADE: "Publication des notes", Category.TIMETABLE: "Changements d'emploi du temps",
        Category.ADMINISTRATIVE: "Administratif", Category.SECURITY: "Sécurité et urgence",
    },
}


@track_performance
class DigestNotifier(EmailMixin, Notifier):
    """Renders and sends digest emails (templates/notifications/digest/). Not offered to senders."""

    key = "digest"
    label = _("Daily digest")
    internal = True

    def context(self, message):
        digest = message.notification
        return {
            **super().context(message),
            "items": digest.items_for(message.recipient.language),
            "category": digest.category,
            "category_label": CATEGORY_LABELS.get(message.recipient.language, {}).get(
                digest.category, str(Category(digest.category).label)),
        }


@dataclasses.dataclass
class Digest:
    """What a digest email is about; stands where a Notification stands in a Message."""

    category: str
    items: list
    pk: None = None
    title: str = ""
    body: str = ""
    deadline: None = None
    priority: str = Priority.LOW
    data: dict = dataclasses.field(default_factory=dict)

    def content_for(self, language):
        return self.title, self.body

    def items_for(self, language):
        """Each notification of the digest as {"title", "body", "notification"} in the recipient's language."""
        return [dict(zip(("title", "body"), item.content_for(language)), notification=item) for item in self.items]


def digests_enqueue(*, now=None):
    """(Sweep) Hand recipients whose digest is due to the workers; returns {"digests_enqueued": n}."""
    now = now or timezone.now()
    stale = now - timedelta(seconds=settings.DELIVERY_STALE_SECONDS)
    due = Delivery.objects.filter(Q(enqueued_at__isnull=True) | Q(enqueued_at__lt=stale), digest=True,
                                  status__in=[Status.QUEUED, Status.RETRYING], next_attempt_at__lte=now)
    recipient_ids = sorted(set(due.values_list("recipient_id", flat=True)[:50_000]))
    if not recipient_ids:
        return {}
    for start in range(0, len(recipient_ids), DIGEST_RECIPIENTS_PER_TASK):
        chunk = recipient_ids[start:start + DIGEST_RECIPIENTS_PER_TASK]
        due.filter(recipient_id__in=chunk).update(enqueued_at=now)
        enqueue_digests(chunk)
    return {"digests_enqueued": len(recipient_ids)}


def digests_send(recipient_ids, *, now=None):
    """Send the due digests of these recipients: one email per recipient and category.

    Returns {delivery status: count} over the gathered deliveries.
    """
    now = now or timezone.now()
    token = uuid.uuid4().hex
    claimed = Delivery.objects.filter(
        recipient_id__in=recipient_ids, digest=True, status__in=[Status.QUEUED, Status.RETRYING],
        next_attempt_at__lte=now,
    ).update(status=Status.SENDING, claim_token=token, claimed_at=now, attempts=F("attempts") + 1)
    if not claimed:
        return {}
    deliveries = list(Delivery.objects.filter(claim_token=token).select_related("recipient", "notification")
                      .order_by("notification__created_at", "pk"))
    cancelled = [d.pk for d in deliveries if d.notification.status == Notification.Status.CANCELLED]
    if cancelled:
        Delivery.objects.filter(pk__in=cancelled).update(status=Status.CANCELLED, claim_token="")
    groups = {}
    for delivery in deliveries:
        if delivery.pk not in cancelled:
            groups.setdefault((delivery.recipient_id, delivery.notification.category), []).append(delivery)

    notifier = get_notifier(DigestNotifier.key)
    messages, gathered = [], {}
    for (_recipient_id, category), batch in groups.items():
        first = batch[0]
        try:
            recipient = Recipient.from_user(first.recipient)
        except ValidationError as exc:
            for delivery in batch:
                delivery_fail(delivery, f"invalid address: {'; '.join(exc.messages)}", now)
            continue
        messages.append(Message(
            delivery_id=first.pk, channel=Channel.EMAIL, recipient=recipient,
            notification=Digest(category=category, items=[d.notification for d in batch]),
            message_id=first.message_id, attempt=first.attempts, unsubscribe_url=action_url("unsubscribe", first),
        ))
        gathered[first.pk] = batch
    summary = {}
    for outcome in notifier.deliver(messages):
        batch = gathered[outcome.delivery_id]
        logger.info("digest of %d to user %s: %s", len(batch), batch[0].recipient_id,
                    "sent" if outcome.ok else "not sent",
                    extra={"delivery_id": batch[0].pk, "user_id": batch[0].recipient_id})
        outcomes_record({d.pk: d for d in batch}, [dataclasses.replace(outcome, delivery_id=d.pk) for d in batch],
                         now, summary)
    for notification in {d.notification_id: d.notification for d in deliveries}.values():
        notification_refresh_status(notification)
    flush_metrics()
    return summary
