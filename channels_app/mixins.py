"""Channel mixins: each supplies one channel's send step (marked `@send_step`): messages -> [Outcome].

They talk to their provider through its real client and classify failures as permanent
(never retried) or transient (retried by the engine with backoff). The inbox channel
writes through the store named by the `INBOX_STORE` setting (a dotted path, the way Django
picks backends), so this layer knows nothing of the model that holds a student's inbox.
"""

import json
import logging
import smtplib
import socket
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime

from anymail.exceptions import AnymailAPIError, AnymailRecipientsRefused
from django.conf import settings
from django.core.mail import EmailMultiAlternatives, get_connection
from django.urls import reverse
from django.utils.module_loading import import_string
from py_vapid import Vapid02
from pywebpush import WebPushException, webpush
from requests import Session
from requests.exceptions import RequestException
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client

from .base import Outcome
from .config import EmailConfig, InboxConfig, PushConfig, SMSConfig
from .constants import Channel, Priority
from .decorators import circuit_breaker, validate_config
from .models import PushSubscription
from .push_hosts import endpoint_problem
from .registry import ChannelMeta, send_step

logger = logging.getLogger(__name__)


def _log_provider_error(message, error):
    logger.warning("provider error on %s: %s", message.channel, error,
                   extra={"delivery_id": message.delivery_id, "notification_id": message.notification.pk,
                          "channel": message.channel})


def retry_after_seconds(headers):
    """Seconds asked for by a Retry-After header (delta-seconds or HTTP-date), or None."""
    value = (headers or {}).get("Retry-After")
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        return max((parsedate_to_datetime(value) - datetime.now(timezone.utc)).total_seconds(), 0.0)
    except (TypeError, ValueError):
        return None


def _smtp_outcome(message, exc):
    code = getattr(exc, "smtp_code", None)
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        code = next(iter(exc.recipients.values()), (None,))[0]
    if isinstance(code, int) and 500 <= code < 600:
        return Outcome.permanent_failure(message, f"SMTP {code}: refused")
    return Outcome.transient_failure(message, f"{type(exc).__name__}: {exc}", provider_failure=True)


def esp_message_id(connection, email, message):
    """The id a sent email is recorded under: the ESP's own id behind the ESP's name ("Postmark:<id>"), so
    a receipt moves only emails sent through the ESP that reports it; our Message-ID over SMTP."""
    status = getattr(email, "anymail_status", None)
    esp = getattr(connection, "esp_name", "")
    if status is not None and status.message_id and esp:
        return f"{esp}:{status.message_id}"
    return f"{esp}:{message.message_id}" if esp else str(message.message_id)


@validate_config(EmailConfig)
@circuit_breaker("email")
class EmailMixin(metaclass=ChannelMeta):
    """Email through Django's email API: SMTP by default, any django-anymail backend by setting."""

    channel = Channel.EMAIL

    def build_email(self, message):
        headers = {"Message-ID": message.message_id}
        if message.priority in (Priority.HIGH, Priority.URGENT):
            headers["Importance"] = "high"  # RFC 2156; mail clients flag it
        if message.unsubscribe_url:
            headers["List-Unsubscribe"] = f"<{message.unsubscribe_url}>"
            headers["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        email = EmailMultiAlternatives(
            subject=message.content["subject"], body=message.content["text"],
            from_email=settings.DEFAULT_FROM_EMAIL, to=[message.recipient.email], headers=headers,
        )
        email.attach_alternative(message.content["html"], "text/html")
        # django-anymail sends metadata to the ESP, which returns it with tracking events.
        email.metadata = {"delivery_id": str(message.delivery_id)}
        return email

    @send_step
    def send_email(self, messages):
        """Send the batch over one connection (one SMTP session or one ESP client)."""
        outcomes = []
        connection = get_connection()
        try:
            connection.open()
        except (OSError, smtplib.SMTPException) as exc:
            for message in messages:
                _log_provider_error(message, exc)
            return [Outcome.transient_failure(m, f"cannot connect: {exc}", provider_failure=True) for m in messages]
        try:
            for message in messages:
                if not message.recipient.email:
                    outcomes.append(Outcome.permanent_failure(message, "recipient has no email address"))
                    continue
                email = self.build_email(message)
                try:
                    connection.send_messages([email])
                except AnymailRecipientsRefused as exc:
                    outcomes.append(Outcome.permanent_failure(message, f"refused: {exc}"))
                except AnymailAPIError as exc:
                    status = getattr(exc, "status_code", None)
                    _log_provider_error(message, exc)
                    if status and 400 <= status < 500 and status != 429:
                        outcomes.append(Outcome.permanent_failure(message, f"provider answered {status}: {exc}"))
                    else:
                        response = getattr(exc, "response", None)
                        outcomes.append(Outcome.transient_failure(
                            message, f"provider error: {exc}", provider_failure=status != 429,
                            retry_after=retry_after_seconds(response.headers) if response is not None else None))
                except (smtplib.SMTPException, OSError, socket.timeout) as exc:
                    _log_provider_error(message, exc)
                    outcomes.append(_smtp_outcome(message, exc))
                    if isinstance(exc, (smtplib.SMTPServerDisconnected, OSError)):
                        connection.close()
                        try:
                            connection.open()
                        except (OSError, smtplib.SMTPException):
                            rest = messages[len(outcomes):]
                            outcomes += [Outcome.transient_failure(m, "connection lost", provider_failure=True)
                                         for m in rest]
                            break
                else:
                    outcomes.append(Outcome.sent(message, esp_message_id(connection, email, message)))
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
        """One client (one HTTP session) per batch, talking to TWILIO_API_BASE."""
        class HttpClient(TwilioHttpClient):
            # TwilioRestException carries no headers: keep the last ones for Retry-After.
            last_headers = {}

            def request(self, *args, **kwargs):
                response = super().request(*args, **kwargs)
                self.last_headers = response.headers or {}
                return response

        client = Client(settings.TWILIO_ACCOUNT_SID, settings.TWILIO_AUTH_TOKEN,
                        http_client=HttpClient(pool_connections=True, timeout=10))
        client.api.base_url = settings.TWILIO_API_BASE.rstrip("/")
        return client

    @staticmethod
    def _last_headers(client):
        return client.http_client.last_headers

    @send_step
    def send_sms(self, messages):
        client = self.twilio_client()
        callback = settings.SITE_URL + reverse("twilio-status")
        sender = ({"messaging_service_sid": settings.TWILIO_MESSAGING_SERVICE_SID}
                  if settings.TWILIO_MESSAGING_SERVICE_SID else {"from_": settings.TWILIO_FROM_NUMBER})
        outcomes = []
        for message in messages:
            if not message.recipient.phone:
                outcomes.append(Outcome.permanent_failure(message, "recipient has no verified phone number"))
                continue
            try:
                sent = client.messages.create(
                    to=message.recipient.phone, body=fit_sms(message.content["text"], settings.SMS_MAX_SEGMENTS),
                    # The delivery id rides in the (signed) URL: a receipt may beat the record of the send.
                    status_callback=f"{callback}?delivery={message.delivery_id}", **sender,
                )
            except TwilioRestException as exc:
                _log_provider_error(message, exc)
                if exc.code in self.PERMANENT_CODES or (400 <= exc.status < 500 and exc.status != 429):
                    outcomes.append(Outcome.permanent_failure(message, f"Twilio {exc.status}/{exc.code}: {exc.msg}"))
                else:
                    retry_after = retry_after_seconds(self._last_headers(client)) if exc.status == 429 else None
                    outcomes.append(Outcome.transient_failure(message, f"Twilio {exc.status}: {exc.msg}",
                                                      retry_after=retry_after, provider_failure=exc.status >= 500))
            except (RequestException, TwilioException, OSError) as exc:
                _log_provider_error(message, exc)
                outcomes.append(Outcome.transient_failure(message, f"{type(exc).__name__}: {exc}",
                                                          provider_failure=True))
            else:
                outcomes.append(Outcome.sent(message, sent.sid))
        return outcomes


@validate_config(PushConfig)
@circuit_breaker("push")
class PushNotificationMixin(metaclass=ChannelMeta):
    """Web push through pywebpush with VAPID, to every browser the recipient subscribed."""

    channel = Channel.PUSH
    ttl = 24 * 3600
    # RFC 8030 Urgency: how eagerly the push service wakes a device (and spends its battery).
    URGENCY = {Priority.LOW: "low", Priority.NORMAL: "normal", Priority.HIGH: "high", Priority.URGENT: "high"}

    def push_payload(self, message):
        return json.dumps({
            "title": message.content["title"], "body": message.content["body"],
            "url": message.content.get("link") or message.notification.data.get("url")
            or f"{settings.SITE_URL}/inbox/{message.notification.pk}/",
            "notification_id": message.notification.pk, "delivery_id": message.delivery_id,
        })

    @send_step
    def send_push(self, messages):
        outcomes, expired = [], []
        vapid = Vapid02.from_string(settings.VAPID_PRIVATE_KEY)  # parsed once per batch, not per push
        session = Session()  # one connection pool per batch
        for message in messages:
            subscriptions = message.recipient.push_subscriptions
            if not subscriptions:
                outcomes.append(Outcome.permanent_failure(message, "recipient has no push subscription"))
                continue
            payload, delivered, errors, transient, retry_after = self.push_payload(message), 0, [], False, None
            headers = {"Urgency": self.URGENCY[message.priority]}
            for subscription in subscriptions:
                problem = endpoint_problem(subscription["endpoint"])  # again now: DNS may have changed
                if problem:
                    errors.append(f"push refused: {problem}")
                    continue
                try:
                    webpush(subscription, data=payload, vapid_private_key=vapid,
                            vapid_claims={"sub": settings.VAPID_SUBJECT}, ttl=self.ttl, timeout=10, headers=dict(headers),
                            requests_session=session)
                    delivered += 1
                except WebPushException as exc:
                    status = exc.response.status_code if exc.response is not None else None
                    if status in (404, 410):
                        expired.append(subscription["endpoint"])
                        errors.append(f"subscription expired ({status})")
                    else:
                        _log_provider_error(message, exc)
                        transient = transient or status is None or status >= 500 or status == 429
                        if status == 429:
                            retry_after = retry_after_seconds(exc.response.headers)
                        errors.append(f"push service answered {status}")
                except (RequestException, OSError) as exc:
                    _log_provider_error(message, exc)
                    transient = True
                    errors.append(f"{type(exc).__name__}: {exc}")
            if delivered:
                outcomes.append(Outcome.sent(message, f"{delivered} browser(s)"))
            elif transient:
                outcomes.append(Outcome.transient_failure(message, "; ".join(errors), retry_after=retry_after,
                                                  provider_failure=retry_after is None))
            else:
                outcomes.append(Outcome.permanent_failure(message, "; ".join(errors)))
        session.close()
        if expired:
            removed, _ = PushSubscription.objects.filter(endpoint__in=expired).delete()
            logger.info("removed %d expired push subscription(s)", removed,
                        extra={"notification_id": messages[0].notification.pk, "channel": Channel.PUSH})
        return outcomes


@validate_config(InboxConfig)
class ArchiveMixin(metaclass=ChannelMeta):
    """The in-app inbox: the messages are handed, in one call, to the store `INBOX_STORE` names.

    The store is a callable taking the rendered messages (each with `notification.pk`,
    `notification.category`, `recipient.user_id` and `content["title"]`/`["body"]`) that writes
    them, once per notification and recipient.
    """

    channel = Channel.INBOX

    @send_step
    def send_inbox(self, messages):
        import_string(settings.INBOX_STORE)(messages)
        return [Outcome.sent(m) for m in messages]
