"""Provider receipts in: the one door of channels_app. Each leaves as the `receipt` signal."""

import logging

from anymail.signals import tracking
from django.conf import settings
from django.dispatch import receiver
from django.http import HttpResponse, HttpResponseForbidden
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST
from twilio.request_validator import RequestValidator

from .constants import Channel
from .signals import receipt

logger = logging.getLogger(__name__)

# Twilio MessageStatus -> our receipt event.
TWILIO_EVENTS = {"delivered": "delivered", "undelivered": "undelivered", "failed": "failed"}
# anymail's normalised event_type -> our receipt event.
ANYMAIL_EVENTS = {"delivered": "delivered", "bounced": "bounced", "rejected": "rejected",
                  "complained": "complained", "failed": "failed"}


def _record(*, sender, **kwargs):
    receipt.send(sender=sender, **kwargs)


@csrf_exempt
@require_POST
def twilio_status(request):
    """Twilio's status callback. Refused unless X-Twilio-Signature matches our auth token."""
    signature = request.headers.get("X-Twilio-Signature", "")
    url = settings.SITE_URL + request.get_full_path()
    validator = RequestValidator(settings.TWILIO_AUTH_TOKEN or "")
    if not settings.TWILIO_AUTH_TOKEN or not validator.validate(url, request.POST.dict(), signature):
        logger.warning("refused a Twilio callback with an invalid signature")
        return HttpResponseForbidden("invalid signature")
    event = TWILIO_EVENTS.get(request.POST.get("MessageStatus", ""))
    if event:
        reason = request.POST.get("ErrorCode", "")
        delivery_id = request.GET.get("delivery", "")
        _record(sender="twilio", channel=Channel.SMS, provider_message_id=request.POST.get("MessageSid", ""), event=event,
                reason=f"Twilio error {reason}" if reason else "",
                delivery_id=int(delivery_id) if delivery_id.isdigit() else None)
    return HttpResponse(status=204)


@receiver(tracking)
def anymail_tracking(sender, event, esp_name, **kwargs):
    """django-anymail's normalised tracking events (its webhook views check the shared secret)."""
    kind = ANYMAIL_EVENTS.get(event.event_type)
    delivery_id = str((event.metadata or {}).get("delivery_id", ""))
    if kind and (event.message_id or delivery_id.isdigit()):
        _record(sender=esp_name, channel=Channel.EMAIL, provider_message_id=str(event.message_id or ""), event=kind,
                reason=event.description or event.reject_reason or esp_name,
                delivery_id=int(delivery_id) if delivery_id.isdigit() else None)
