"""Provider receipts (delivered, bounced, failed, complained) applied to the deliveries they name.

They arrive from channels_app's webhooks as the `channels_app.signals.receipt` signal, connected
in NotificationsConfig.ready(). A receipt is believed only as far as it can be: it moves a
delivery that was sent through the provider that reports it, and only along a transition that
follows a send.
"""

import logging

from django.utils import timezone

from ..models import Delivery

logger = logging.getLogger(__name__)
Status = Delivery.Status

FAILURE_EVENTS = ("bounced", "failed", "rejected", "complained", "undelivered")
# What each receipt may follow. `sending` only for a signed callback that names its delivery
# (Twilio's): the provider has the message while the worker has not yet recorded the send.
FOLLOWS = {
    "delivered": (Status.SENT,),
    "failure": (Status.SENT, Status.DELIVERED),
}


def _sent_through(deliveries, *, channel, provider, provider_message_id, delivery_id):
    """The deliveries the receipt names, narrowed to those sent through `provider`."""
    if channel == "email":
        # The email step records "<ESP name>:<ESP's id>" (channels_app.mixins.esp_message_id).
        if delivery_id:
            return deliveries.filter(pk=delivery_id, provider_message_id__startswith=f"{provider}:")
        return deliveries.filter(provider_message_id=f"{provider}:{provider_message_id}")
    if delivery_id:
        return deliveries.filter(pk=delivery_id)
    return deliveries.filter(provider_message_id=provider_message_id) if provider_message_id else deliveries.none()


def delivery_record_receipt(*, channel, provider, provider_message_id, event, reason="", delivery_id=None,
                            signed=False):
    """Apply a provider's receipt (delivered, bounced, failed, complained) to the delivery it names.

    `provider` is who reports it (the receipt signal's sender: "twilio", or anymail's ESP name).
    A receipt never moves a delivery that is queued, retrying, skipped or cancelled, nor one sent
    through another provider; "delivered" follows "sent", a failure follows "sent" or "delivered".
    A `signed` receipt that names its delivery (Twilio's status callback, whose URL carries the
    delivery id under Twilio's signature) may also arrive before the worker has recorded the send:
    it applies to the delivery still `sending`, and the worker's record keeps it.
    """
    if channel == "sms" and provider != "twilio":
        return 0
    deliveries = _sent_through(Delivery.objects.filter(channel=channel), channel=channel, provider=provider,
                               provider_message_id=provider_message_id, delivery_id=delivery_id)
    kind = "delivered" if event == "delivered" else "failure" if event in FAILURE_EVENTS else None
    if kind is None:
        return 0
    follows = FOLLOWS[kind] + ((Status.SENDING,) if signed and delivery_id else ())
    deliveries = deliveries.filter(status__in=follows)
    now = timezone.now()
    ids = list(deliveries.values_list("pk", "notification_id"))
    if kind == "delivered":
        count = deliveries.update(status=Status.DELIVERED, delivered_at=now)
    else:
        count = deliveries.update(status=Status.FAILED, failed_at=now, last_error=f"{event}: {reason}"[:2000])
    for pk, notification_id in ids:
        logger.debug("delivery %s receipt %s", pk, event,
                     extra={"delivery_id": pk, "notification_id": notification_id, "event": event})
    if not count:
        logger.info("ignored a %s receipt from %s that names no delivery it can move", event, provider,
                    extra={"event": event, "channel": channel})
    return count


def receipt_received(sender, *, channel, provider_message_id, event, reason="", delivery_id=None, signed=False,
                     **kwargs):
    """Receiver of channels_app.signals.receipt (`sender` is the provider's name)."""
    return delivery_record_receipt(channel=channel, provider=sender, provider_message_id=provider_message_id,
                                   event=event, reason=reason, delivery_id=delivery_id, signed=signed)
