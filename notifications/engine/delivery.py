"""Delivering: claim due deliveries, hand them to their notifier, record every outcome.

A delivery is claimed (`sending`, with a claim token and a lease) before it is sent, and
its outcome is recorded on it: sent, failed with the reason, or retrying at a backoff.
"""

import logging
import random
import uuid
from datetime import timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db.models import Case, F, Value, When
from django.utils import timezone

from channels_app.base import Message, Recipient
from channels_app.constants import Channel
from channels_app.decorators import flush_metrics
from channels_app.models import PushSubscription
from channels_app.registry import get_notifier

from ..links import link_url
from ..models import Delivery, Notification, RecipientContext

logger = logging.getLogger(__name__)
Status = Delivery.Status


def log_notification(notification, status):
    logger.info("notification %s %s", notification.pk, status,
                extra={"notification_id": notification.pk, "status": status})


def _backoff(attempts, retry_after=None):
    if retry_after:
        return timedelta(seconds=float(retry_after))
    base = settings.DELIVERY_RETRY_BASE_SECONDS * (2 ** max(attempts - 1, 0))
    capped = min(base, settings.DELIVERY_RETRY_MAX_SECONDS)
    return timedelta(seconds=capped * random.uniform(0.5, 1.0))  # "equal jitter"


def action_url(name, delivery):
    return link_url(name, user_id=delivery.recipient_id, notification_id=delivery.notification_id)


def message_for(delivery, push_subscriptions, contexts=None):
    recipient = Recipient.from_user(delivery.recipient, push_subscriptions.get(delivery.recipient_id, ()),
                                    channel=delivery.channel)
    notification = delivery.notification
    return Message(
        delivery_id=delivery.pk, channel=delivery.channel, recipient=recipient, notification=notification,
        message_id=delivery.message_id, attempt=delivery.attempts,
        unsubscribe_url=action_url("unsubscribe", delivery) if delivery.channel == Channel.EMAIL else "",
        ack_url=action_url("acknowledge", delivery) if notification.requires_ack else "",
        context=(contexts or {}).get((delivery.notification_id, delivery.recipient_id)),
    )


def deliveries_send(delivery_ids, *, now=None):
    """Claim the given deliveries that are due, send them, and record every outcome."""
    now = now or timezone.now()
    token = uuid.uuid4().hex
    claimed = Delivery.objects.filter(
        pk__in=delivery_ids, status__in=[Status.QUEUED, Status.RETRYING], next_attempt_at__lte=now, digest=False,
    ).update(status=Status.SENDING, claim_token=token, claimed_at=now, attempts=F("attempts") + 1)
    if not claimed:
        return {}
    deliveries = list(Delivery.objects.filter(claim_token=token).select_related("recipient"))
    # One row per notification (usually one), not one joined copy per delivery.
    notifications = Notification.objects.in_bulk({d.notification_id for d in deliveries})
    for delivery in deliveries:
        delivery.notification = notifications[delivery.notification_id]
    if logger.isEnabledFor(logging.DEBUG):
        for delivery in deliveries:
            logger.debug("delivery %s sending (attempt %d)", delivery.pk, delivery.attempts,
                         extra={"delivery_id": delivery.pk, "notification_id": delivery.notification_id,
                                "channel": delivery.channel, "status": Status.SENDING})
    push_users = {d.recipient_id for d in deliveries if d.channel == Channel.PUSH}
    subscriptions = {}
    for sub in PushSubscription.objects.filter(user_id__in=push_users):
        subscriptions.setdefault(sub.user_id, []).append(sub.as_subscription_info())

    contexts = {
        (row.notification_id, row.recipient_id): row.context
        for row in RecipientContext.objects.filter(notification_id__in={d.notification_id for d in deliveries},
                                                   recipient_id__in={d.recipient_id for d in deliveries})
    }

    by_notification, cancelled = {}, []
    for delivery in deliveries:
        if delivery.notification.status == Notification.Status.CANCELLED:
            cancelled.append(delivery.pk)
        else:
            by_notification.setdefault(delivery.notification_id, []).append(delivery)
    if cancelled:
        Delivery.objects.filter(pk__in=cancelled).update(status=Status.CANCELLED, claim_token="")
        for delivery in deliveries:
            if delivery.pk in cancelled:
                logger.debug("delivery %s cancelled", delivery.pk, extra={"delivery_id": delivery.pk,
                             "notification_id": delivery.notification_id, "status": Status.CANCELLED})

    summary = {}
    for notification_id, batch in by_notification.items():
        notification = batch[0].notification
        notifier = get_notifier(notification.notifier)
        messages = []
        for delivery in batch:
            try:
                messages.append(message_for(delivery, subscriptions, contexts))
            except ValidationError as exc:  # an address in the database no longer validates
                delivery_fail(delivery, f"invalid address: {'; '.join(exc.messages)}", now)
        outcomes = notifier.deliver(messages, now=now)
        outcomes_record({d.pk: d for d in batch}, outcomes, now, summary)
        # Read again: the fan-out may have finished while this batch was being sent.
        notification_refresh_status(Notification.objects.only("pk", "status", "fanned_out_at").get(pk=notification_id))
    flush_metrics()
    return summary


def delivery_fail(delivery, error, now):
    Delivery.objects.filter(pk=delivery.pk).update(status=Status.FAILED, last_error=error[:2000], failed_at=now,
                                                   claim_token="")
    logger.debug("delivery %s failed: %s", delivery.pk, error, extra={
        "delivery_id": delivery.pk, "notification_id": delivery.notification_id, "status": Status.FAILED})


def outcomes_record(deliveries, outcomes, now, summary):
    sent, failed, retrying = [], [], []
    for outcome in outcomes:
        delivery = deliveries[outcome.delivery_id]
        extra = {"delivery_id": delivery.pk, "notification_id": delivery.notification_id, "channel": delivery.channel}
        if outcome.ok:
            delivery.status, delivery.sent_at = Status.SENT, now
            delivery.provider_message_id = outcome.provider_message_id[:200]
            delivery.send_count += 1
            delivery.last_error = ""
            sent.append(delivery)
        elif outcome.permanent or (outcome.attempted and delivery.attempts >= settings.DELIVERY_MAX_ATTEMPTS):
            delivery.status, delivery.failed_at = Status.FAILED, now
            delivery.last_error = outcome.error[:2000] + (
                "" if outcome.permanent else f" (gave up after {delivery.attempts} attempts)")
            failed.append(delivery)
        else:
            if not outcome.attempted:  # refused before trying (breaker open): not an attempt
                delivery.attempts -= 1
            delivery.status = Status.RETRYING
            delivery.next_attempt_at = now + _backoff(delivery.attempts, outcome.retry_after)
            delivery.enqueued_at = None
            delivery.last_error = outcome.error[:2000]
            retrying.append(delivery)
        delivery.claim_token = ""
        logger.debug("delivery %s %s", delivery.pk, delivery.status, extra={**extra, "status": delivery.status})
    if sent:
        # What all sent rows share goes in one UPDATE; only the provider's ids differ row by row
        # (bulk_update's CASE per field costs more than the sending itself on a big chunk).
        Delivery.objects.filter(pk__in=[d.pk for d in sent]).update(
            # A receipt that came back while the batch was being sent is newer than "sent": keep it.
            status=Case(When(status__in=[Status.DELIVERED, Status.FAILED], then=F("status")),
                        default=Value(Status.SENT)),
            sent_at=now, send_count=F("send_count") + 1, last_error="", claim_token="")
        with_ids = [d for d in sent if d.provider_message_id]
        if with_ids:
            Delivery.objects.bulk_update(with_ids, ["provider_message_id"], batch_size=1000)
    if failed:
        Delivery.objects.bulk_update(failed, ["status", "failed_at", "last_error", "claim_token"], batch_size=500)
    if retrying:
        Delivery.objects.bulk_update(retrying, ["status", "attempts", "next_attempt_at", "enqueued_at", "last_error",
                                                "claim_token"], batch_size=500)
    for status, rows in ((Status.SENT, sent), (Status.FAILED, failed), (Status.RETRYING, retrying)):
        if rows:
            summary[status] = summary.get(status, 0) + len(rows)


def notification_refresh_status(notification):
    """Give a fanned-out notification its final status once no delivery is pending."""
    if notification.status != Notification.Status.SENDING or not notification.fanned_out_at:
        return notification
    deliveries = Delivery.objects.filter(notification=notification)
    if deliveries.filter(status__in=Delivery.PENDING_STATUSES).exists():
        return notification
    reached = deliveries.filter(status__in=Delivery.REACHED_STATUSES).exists()
    failed = deliveries.filter(status=Status.FAILED).exists()
    status = (Notification.Status.PARTIALLY_FAILED if reached and failed
              else Notification.Status.FAILED if failed else Notification.Status.SENT)
    if Notification.objects.filter(pk=notification.pk, status=Notification.Status.SENDING).update(
            status=status, completed_at=timezone.now()):
        notification.status = status
        log_notification(notification, status)
    return notification




def message_send_now(notifier, message):
    """Send one message through `notifier`'s fixed sequence now, bypassing the queue (a channel test).

    Returns its Outcome; the circuit breaker and the performance metrics see it like any other.
    """
    [outcome] = notifier.deliver([message])
    flush_metrics()
    return outcome
