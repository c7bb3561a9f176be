"""Provider receipts (delivered, bounced, failed, complained) applied to the deliveries they name.

They arrive from channels_app's webhooks as the `channels_app.signals.receipt` signal, connected
in NotificationsConfig.ready().
"""

import logging

from django.utils import timezone

from ..models import Delivery

logger = logging.getLogger(__name__)
Status = Delivery.Status


def delivery_record_receipt(*, channel, provider_message_id, event, reason="", delivery_id=None):
    """Apply a provider's receipt (delivered, bounced, failed, complained) to the delivery it names.

    A receipt that names its delivery (`delivery_id`, carried in the callback URL or the
    message's metadata) may arrive before the worker has recorded the send: it still applies,
    and the worker's record keeps it.
    """
    if delivery_id:
        deliveries = Delivery.objects.filter(pk=delivery_id, channel=channel)
    else:
        deliveries = Delivery.objects.filter(channel=channel, provider_message_id=provider_message_id)
    now = timezone.now()
    if event == "delivered":
        count = deliveries.filter(status__in=[Status.SENT, Status.SENDING]).update(
            status=Status.DELIVERED, delivered_at=now)
    elif event in ("bounced", "failed", "rejected", "complained", "undelivered"):
        count = deliveries.exclude(status=Status.FAILED).update(
            status=Status.FAILED, failed_at=now, last_error=f"{event}: {reason}"[:2000])
    else:
        return 0
    for delivery in deliveries.only("pk", "notification_id"):
        logger.debug("delivery %s receipt %s", delivery.pk, event,
                     extra={"delivery_id": delivery.pk, "notification_id": delivery.notification_id, "event": event})
    return count




def receipt_received(sender, *, channel, provider_message_id, event, reason="", delivery_id=None, **kwargs):
    """Receiver of channels_app.signals.receipt."""
    return delivery_record_receipt(channel=channel, provider_message_id=provider_message_id, event=event,
                                   reason=reason, delivery_id=delivery_id)
