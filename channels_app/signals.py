"""What leaves the sending layer. Like anymail's `tracking`, receipts go out as a signal, so
channels_app knows nothing of whoever records them (notifications connects in its ready())."""

from django.dispatch import Signal

# Sent by the webhooks with channel, provider_message_id, event ("delivered", "bounced",
# "failed", "rejected", "complained", "undelivered"), reason and delivery_id (or None).
receipt = Signal()

