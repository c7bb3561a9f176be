"""Provider receipts and inbound text messages in: the one door of channels_app. Receipts leave as the
`receipt` signal, text messages as `sms_received`."""

import logging

from anymail import urls as anymail_urls
from anymail.signals import tracking
from anymail.utils import get_anymail_setting
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.dispatch import receiver
from django.http import Http404, HttpResponse, HttpResponseBadRequest, HttpResponseForbidden
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST
from twilio.request_validator import RequestValidator
from twilio.twiml.messaging_response import MessagingResponse

from .constants import Channel
from .signals import receipt, sms_received

logger = logging.getLogger(__name__)

# Twilio MessageStatus -> our receipt event.
TWILIO_EVENTS = {"delivered": "delivered", "undelivered": "undelivered", "failed": "failed"}
# anymail's normalised event_type -> our receipt event.
ANYMAIL_EVENTS = {"delivered": "delivered", "bounced": "bounced", "rejected": "rejected",
                  "complained": "complained", "failed": "failed"}


# anymail's tracking webhook view of each ESP, by the name of its backend's module ("postmark").
ESP_TRACKING_VIEWS = {pattern.name.removesuffix("_tracking_webhook"): pattern.callback
                      for pattern in anymail_urls.urlpatterns if (pattern.name or "").endswith("_tracking_webhook")}


def configured_esp():
    """The ESP that EMAIL_BACKEND sends through ("postmark" for anymail.backends.postmark.EmailBackend), or ""."""
    module, _, _ = settings.EMAIL_BACKEND.rpartition(".")
    esp = module.removeprefix("anymail.backends.") if module.startswith("anymail.backends.") else ""
    return esp if esp in ESP_TRACKING_VIEWS else ""


def anymail_webhook_secret():
    return get_anymail_setting("webhook_secret", default=None, allow_bare=True)


def _record(*, sender, **kwargs):
    receipt.send(sender=sender, **kwargs)


@csrf_exempt
def anymail_tracking_webhook(request, esp):
    """The tracking webhook of the ESP we send through; no other ESP's exists (404).

    Refused without the shared secret (ANYMAIL_WEBHOOK_SECRET, HTTP basic auth): anyone could
    otherwise report our emails bounced. A body the ESP's parser cannot read is a 400, and an ESP
    whose own webhook settings are missing a 503 with the reason logged: never a 500.
    """
    if not esp or esp != configured_esp():
        raise Http404("no such webhook")
    if not anymail_webhook_secret():
        logger.warning("refused a %s tracking webhook: ANYMAIL_WEBHOOK_SECRET is not set", esp)
        return HttpResponseForbidden("webhook secret not configured")
    try:
        return ESP_TRACKING_VIEWS[esp](request)
    except ImproperlyConfigured as exc:  # the ESP's own webhook key missing, or its package not installed
        logger.error("the %s tracking webhook is not configured: %s", esp, exc)
        return HttpResponse("webhook not configured", status=503, content_type="text/plain")
    except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
        logger.warning("refused a %s tracking webhook that could not be read: %s", esp, type(exc).__name__)
        return HttpResponseBadRequest("unreadable event")


def twilio_signed(request):
    """Whether X-Twilio-Signature signs this request (SITE_URL + its path, its form fields) with our auth token."""
    signature = request.headers.get("X-Twilio-Signature", "")
    url = settings.SITE_URL + request.get_full_path()
    validator = RequestValidator(settings.TWILIO_AUTH_TOKEN or "")
    return bool(settings.TWILIO_AUTH_TOKEN) and validator.validate(url, request.POST.dict(), signature)


@csrf_exempt
@require_POST
def twilio_status(request):
    """Twilio's status callback. Refused unless X-Twilio-Signature matches our auth token."""
    if not twilio_signed(request):
        logger.warning("refused a Twilio callback with an invalid signature")
        return HttpResponseForbidden("invalid signature")
    event = TWILIO_EVENTS.get(request.POST.get("MessageStatus", ""))
    if event:
        reason = request.POST.get("ErrorCode", "")
        delivery_id = request.GET.get("delivery", "")
        # signed: Twilio's signature covers the callback URL, so the delivery id in it is the one we gave.
        _record(sender="twilio", channel=Channel.SMS, provider_message_id=request.POST.get("MessageSid", ""), event=event,
                reason=f"Twilio error {reason}" if reason else "",
                delivery_id=int(delivery_id) if delivery_id.isdigit() else None, signed=True)
    return HttpResponse(status=204)


@csrf_exempt
@require_POST
def twilio_inbound(request):
    """Twilio's inbound message webhook: a text message someone sent to our number.

    Refused unless signed like the status callback. The message leaves as the `sms_received` signal;
    the answer a receiver returns goes back as TwiML (Twilio texts it to the sender), else an empty
    <Response/>. Twilio retries a webhook that fails: receivers must make a replayed MessageSid change nothing.
    """
    if not twilio_signed(request):
        logger.warning("refused an inbound Twilio message with an invalid signature")
        return HttpResponseForbidden("invalid signature")
    message_sid, from_number = request.POST.get("MessageSid", ""), request.POST.get("From", "")
    if not message_sid or not from_number:
        return HttpResponseBadRequest("MessageSid and From are required")
    answers = sms_received.send(sender="twilio", message_sid=message_sid[:64], from_number=from_number,
                                to_number=request.POST.get("To", ""), body=request.POST.get("Body", ""))
    twiml = MessagingResponse()
    answer = next((str(answer) for _receiver, answer in answers if answer), "")
    if answer:
        twiml.message(answer)
    return HttpResponse(str(twiml), content_type="application/xml")


@receiver(tracking)
def anymail_tracking(sender, event, esp_name, **kwargs):
    """django-anymail's normalised tracking events (its webhook views check the shared secret).

    `sender` of the receipt is the ESP's name ("Postmark"), which the email step records in front of
    the ESP's message id: a receipt moves only deliveries sent through that ESP."""
    kind = ANYMAIL_EVENTS.get(event.event_type)
    delivery_id = str((event.metadata or {}).get("delivery_id", ""))
    if kind and (event.message_id or delivery_id.isdigit()):
        _record(sender=esp_name, channel=Channel.EMAIL, provider_message_id=str(event.message_id or ""), event=kind,
                reason=event.description or event.reject_reason or esp_name,
                delivery_id=int(delivery_id) if delivery_id.isdigit() else None)
