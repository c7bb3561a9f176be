"""What leaves the sending layer. Like anymail's `tracking`, receipts go out as a signal, so
channels_app knows nothing of whoever records them (notifications connects in its ready())."""

from django.dispatch import Signal

# Sent by the webhooks with sender=<the provider's name> ("twilio", or anymail's esp_name such as
# "Postmark"), channel, provider_message_id, event ("delivered", "bounced", "failed", "rejected",
# "complained", "undelivered"), reason, delivery_id (or None) and signed (the provider signed the
# callback that carries delivery_id: Twilio's status callback).
receipt = Signal()


# Sent by Twilio's inbound message webhook (signed) with sender="twilio", message_sid, from_number,
# to_number and body: a text message someone sent us (a check-in answer, STOP, START, HELP...).
# A receiver may return the text to answer with (the webhook's TwiML <Message>); the first non-empty one is sent.
sms_received = Signal()
