"""Channel mixins: each supplies one channel's send step, `send_<channel>(messages) -> [Outcome]`.

They talk to their provider through its real client and classify failures as permanent
(never retried) or transient (retried by the engine with backoff).
"""

import json
import logging
import smtplib
import socket

from anymail.exceptions import AnymailAPIError, AnymailRecipientsRefused
from django.conf import settings
from django.core.mail import EmailMultiAlternatives, get_connection
from django.urls import reverse

from .base import Outcome
from .config import EmailConfig, InboxConfig, PushConfig, SMSConfig
from .constants import Channel
from .decorators import circuit_breaker, validate_config
from .models import InboxMessage, PushSubscription
from .registry import ChannelMeta

logger = logging.getLogger(__name__)


def _log_provider_error(message, error):
    logger.warning("provider error on %s: %s", message.channel, error,
                   extra={"delivery_id": message.delivery_id, "notification_id": message.notification.pk,
                          "channel": message.channel})


def _smtp_outcome(message, exc):
    code = getattr(exc, "smtp_code", None)
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        code = next(iter(exc.recipients.values()), (None,))[0]
    if isinstance(code, int) and 500 <= code < 600:
        return Outcome.permanent(message, f"SMTP {code}: refused")
    return Outcome.transient(message, f"{type(exc).__name__}: {exc}", provider_failure=True)


@validate_config(EmailConfig)
@circuit_breaker("email")
class EmailMixin(metaclass=ChannelMeta):
    """Email through Django's email API: SMTP by default, any django-anymail backend by setting."""

    channel = Channel.EMAIL

    def build_email(self, message):
        headers = {"Message-ID": message.message_id}
        if message.unsubscribe_url:
            headers["List-Unsubscribe"] = f"<{message.unsubscribe_url}>"
            headers["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        email = EmailMultiAlternatives(
            subject=message.content["subject"], body=message.content["text"],
            from_email=settings.DEFAULT_FROM_EMAIL, to=[message.recipient.email], headers=headers,
        )
        email.attach_alternative(message.content["html"], "text/html")
        return email

    def send_email(self, messages):
        """Send the batch over one connection (one SMTP session or one ESP client)."""
        outcomes = []
        connection = get_connection()
        try:
            connection.open()
        except (OSError, smtplib.SMTPException) as exc:
            for message in messages:
                _log_provider_error(message, exc)
            return [Outcome.transient(m, f"cannot connect: {exc}", provider_failure=True) for m in messages]
        try:
            for message in messages:
                if not message.recipient.email:
                    outcomes.append(Outcome.permanent(message, "recipient has no email address"))
                    continue
                email = self.build_email(message)
                try:
                    connection.send_messages([email])
                except AnymailRecipientsRefused as exc:
                    outcomes.append(Outcome.permanent(message, f"refused: {exc}"))
                except AnymailAPIError as exc:
                    status = getattr(exc, "status_code", None)
                    _log_provider_error(message, exc)
                    if status and 400 <= status < 500 and status != 429:
                        outcomes.append(Outcome.permanent(message, f"provider answered {status}: {exc}"))
                    else:
                        outcomes.append(Outcome.transient(message, f"provider error: {exc}", provider_failure=True))
                except (smtplib.SMTPException, OSError, socket.timeout) as exc:
                    _log_provider_error(message, exc)
                    outcomes.append(_smtp_outcome(message, exc))
                    if isinstance(exc, (smtplib.SMTPServerDisconnected, OSError)):
                        connection.close()
                        try:
                            connection.open()
                        except (OSError, smtplib.SMTPException):
                            rest = messages[len(outcomes):]
                            outcomes += [Outcome.transient(m, "connection lost", provider_failure=True) for m in rest]
                            break
                else:
                    status = getattr(email, "anymail_status", None)
                    provider_id = (status.message_id if status and status.message_id else message.message_id)
                    outcomes.append(Outcome.sent(message, str(provider_id)))
        finally:
            connection.close()
        return outcomes


GSM7 = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿"
    "abcdefghijklmnopqrstuvwxyzäöñüà^{}\\[~]|€"
)


def fit_sms(text, max_segments):
    """Cut `text` to at most `max_segments` SMS segments (GSM-7 or UCS-2), ending with '…' when cut."""
    gsm = all(char in GSM7 for char in text)
    single, multi = (160, 153) if gsm else (70, 67)
    limit = single if max_segments <= 1 or len(text) <= single else multi * max_segments
    if len(text) <= limit:
        return text
    ellipsis = "..." if gsm else "…"
    return text[: limit - len(ellipsis)].rstrip() + ellipsis


@validate_config(SMSConfig)
@circuit_breaker("sms")
class SMSMixin(metaclass=ChannelMeta):
    """SMS through the twilio client, with a status callback for delivery receipts."""

    channel = Channel.SMS
    # Twilio error codes that will not succeed on retry (invalid or unreachable number, opted out).
    PERMANENT_CODES = {21211, 21214, 21217, 21408, 21610, 21612, 21614, 30003, 30005, 30006}

    def twilio_client(self):
        from twilio.rest import Client

        client = Client(settings.TWILIO_ACCOUNT_SID, settings.TWILIO_AUTH_TOKEN)
        client.api.base_url = settings.TWILIO_API_BASE.rstrip("/")
        return client

    def send_sms(self, messages):
        from requests.exceptions import RequestException
        from twilio.base.exceptions import TwilioException, TwilioRestException

        client = self.twilio_client()
        callback = settings.SITE_URL + reverse("twilio-status")
        sender = ({"messaging_service_sid": settings.TWILIO_MESSAGING_SERVICE_SID}
                  if settings.TWILIO_MESSAGING_SERVICE_SID else {"from_": settings.TWILIO_FROM_NUMBER})
        outcomes = []
        for message in messages:
            if not message.recipient.phone:
                outcomes.append(Outcome.permanent(message, "recipient has no verified phone number"))
                continue
            try:
                sent = client.messages.create(
                    to=message.recipient.phone, body=fit_sms(message.content["text"], settings.SMS_MAX_SEGMENTS),
                    status_callback=callback, **sender,
                )
            except TwilioRestException as exc:
                _log_provider_error(message, exc)
                if exc.code in self.PERMANENT_CODES or (400 <= exc.status < 500 and exc.status != 429):
                    outcomes.append(Outcome.permanent(message, f"Twilio {exc.status}/{exc.code}: {exc.msg}"))
                else:
                    retry_after = None
                    if exc.status == 429:
                        retry_after = 60
                    outcomes.append(Outcome.transient(message, f"Twilio {exc.status}: {exc.msg}",
                                                      retry_after=retry_after, provider_failure=exc.status >= 500))
            except (RequestException, TwilioException, OSError) as exc:
                _log_provider_error(message, exc)
                outcomes.append(Outcome.transient(message, f"{type(exc).__name__}: {exc}", provider_failure=True))
            else:
                outcomes.append(Outcome.sent(message, sent.sid))
        return outcomes


@validate_config(PushConfig)
@circuit_breaker("push")
class PushNotificationMixin(metaclass=ChannelMeta):
    """Web push through pywebpush with VAPID, to every browser the recipient subscribed."""

    channel = Channel.PUSH
    ttl = 24 * 3600

    def push_payload(self, message):
        return json.dumps({
            "title": message.content["title"], "body": message.content["body"],
            "url": message.content.get("link") or message.notification.data.get("url")
            or f"{settings.SITE_URL}/inbox/{message.notification.pk}/",
            "notification_id": message.notification.pk, "delivery_id": message.delivery_id,
        })

    def send_push(self, messages):
        from pywebpush import WebPushException, webpush
        from requests.exceptions import RequestException

        outcomes, expired = [], []
        for message in messages:
            subscriptions = message.recipient.push_subscriptions
            if not subscriptions:
                outcomes.append(Outcome.permanent(message, "recipient has no push subscription"))
                continue
            payload, delivered, errors, transient = self.push_payload(message), 0, [], False
            for subscription in subscriptions:
                try:
                    webpush(subscription, data=payload, vapid_private_key=settings.VAPID_PRIVATE_KEY,
                            vapid_claims={"sub": settings.VAPID_SUBJECT}, ttl=self.ttl, timeout=10)
                    delivered += 1
                except WebPushException as exc:
                    status = exc.response.status_code if exc.response is not None else None
                    if status in (404, 410):
                        expired.append(subscription["endpoint"])
                        errors.append(f"subscription expired ({status})")
                    else:
                        _log_provider_error(message, exc)
                        transient = transient or status is None or status >= 500 or status == 429
                        errors.append(f"push service answered {status}")
                except (RequestException, OSError) as exc:
                    _log_provider_error(message, exc)
                    transient = True
                    errors.append(f"{type(exc).__name__}: {exc}")
            if delivered:
                outcomes.append(Outcome.sent(message, f"{delivered} browser(s)"))
            elif transient:
                outcomes.append(Outcome.transient(message, "; ".join(errors), provider_failure=True))
            else:
                outcomes.append(Outcome.permanent(message, "; ".join(errors)))
        if expired:
            removed, _ = PushSubscription.objects.filter(endpoint__in=expired).delete()
            logger.info("removed %d expired push subscription(s)", removed)
        return outcomes


@validate_config(InboxConfig)
class ArchiveMixin(metaclass=ChannelMeta):
    """The in-app inbox: one InboxMessage per notification and recipient, written in bulk."""

    channel = Channel.INBOX

    def send_inbox(self, messages):
        InboxMessage.objects.bulk_create(
            [InboxMessage(notification_id=m.notification.pk, recipient_id=m.recipient.user_id,
                          title=m.content["title"][:200], body=m.content["body"], category=m.notification.category)
             for m in messages],
            ignore_conflicts=True,
        )
        return [Outcome.sent(m) for m in messages]
