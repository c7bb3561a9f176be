"""Channel mixins: each supplies one channel's send step (marked `@send_step`): messages -> [Outcome].

They talk to their provider through its real client and classify failures as permanent
(never retried) or transient (retried by the engine with backoff). The inbox channel
writes through the store named by the `INBOX_STORE` setting (a dotted path, the way Django
picks backends), so this layer knows nothing of the model that holds a student's inbox.
"""

import json
import logging
import smtplib
from urllib.parse import urlsplit

from django.conf import settings
from django.core.mail import EmailMultiAlternatives, get_connection
from django.urls import reverse
from django.utils.module_loading import import_string
from py_vapid import Vapid02
from pywebpush import webpush
from requests import Session
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client

from .config import EmailConfig, InboxConfig, PushConfig, SMSConfig
from .constants import Channel, Priority
from .decorators import circuit_breaker, rate_limit, validate_config
from .errors import TWILIO_PERMANENT_CODES, outcome_for_error, retry_after_seconds
from .models import PushSubscription
from .outcomes import Outcome
from .push_hosts import endpoint_problem, endpoint_summary
from .registry import ChannelMeta, send_step

logger = logging.getLogger(__name__)


__all__ = ["ArchiveMixin", "EmailMixin", "PushNotificationMixin", "SMSMixin", "fit_sms", "retry_after_seconds"]


def esp_message_id(connection, email, message):
    """The id a sent email is recorded under: the ESP's own id behind the ESP's name ("Postmark:<id>"), so
    a receipt moves only emails sent through the ESP that reports it; our Message-ID over SMTP."""
    status = getattr(email, "anymail_status", None)
    esp = getattr(connection, "esp_name", "")
    if status is not None and status.message_id and esp:
        return f"{esp}:{status.message_id}"
    return f"{esp}:{message.message_id}" if esp else str(message.message_id)


@validate_config(EmailConfig)
@rate_limit("email")
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
        """Send the batch over one connection (one SMTP session or one ESP client), yielding as it goes."""
        connection = get_connection()
        try:
            connection.open()
        except (OSError, smtplib.SMTPException) as exc:
            for message in messages:
                outcome = outcome_for_error(message, exc)
                outcome.error = f"cannot connect: {exc}"
                yield outcome
            return
        try:
            for index, message in enumerate(messages):
                if not message.recipient.email:
                    yield Outcome.permanent_failure(message, "recipient has no email address")
                    continue
                try:
                    email = self.build_email(message)
                    connection.send_messages([email])
                except Exception as exc:  # this message alone: a header error, a refusal, a lost connection
                    yield outcome_for_error(message, exc)
                    if isinstance(exc, (smtplib.SMTPServerDisconnected, OSError)):
                        connection.close()
                        try:
                            connection.open()
                        except (OSError, smtplib.SMTPException):
                            for rest in messages[index + 1:]:
                                yield Outcome.transient_failure(rest, "connection lost", provider_failure=True)
                            return
                else:
                    yield Outcome.sent(message, esp_message_id(connection, email, message))
        finally:
            connection.close()


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
@rate_limit("sms")
@circuit_breaker("sms")
class SMSMixin(metaclass=ChannelMeta):
    """SMS through the twilio client, with a status callback for delivery receipts."""

    channel = Channel.SMS
    PERMANENT_CODES = TWILIO_PERMANENT_CODES

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
        for message in messages:
            if not message.recipient.phone:
                yield Outcome.permanent_failure(message, "recipient has no verified phone number")
                continue
            try:
                sent = client.messages.create(
                    to=message.recipient.phone, body=fit_sms(message.content["text"], settings.SMS_MAX_SEGMENTS),
                    # The delivery id rides in the (signed) URL: a receipt may beat the record of the send.
                    status_callback=f"{callback}?delivery={message.delivery_id}", **sender,
                )
            except Exception as exc:  # this message alone, whatever the client raised
                yield outcome_for_error(message, exc, headers=self._last_headers(client))
            else:
                yield Outcome.sent(message, sent.sid)


@validate_config(PushConfig)
@rate_limit("push")
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
        vapid = Vapid02.from_string(settings.VAPID_PRIVATE_KEY)  # parsed once per batch, not per push
        session = Session()  # one connection pool per batch
        expired = []
        try:
            for message in messages:
                yield self._push_one(message, vapid, session, expired)
        finally:
            session.close()
            if expired:
                removed, _ = PushSubscription.objects.filter(endpoint__in=expired).delete()
                logger.info("removed %d expired push subscription(s)", removed,
                            extra={"notification_id": messages[0].notification.pk, "channel": Channel.PUSH})

    def _push_one(self, message, vapid, session, expired):
        """Push one message to each of its recipient's browsers: sent if any took it."""
        subscriptions = message.recipient.push_subscriptions
        if not subscriptions:
            return Outcome.permanent_failure(message, "recipient has no push subscription")
        try:
            payload = self.push_payload(message)
        except Exception as exc:
            return outcome_for_error(message, exc)
        delivered, failures = 0, []
        headers = {"Urgency": self.URGENCY[message.priority]}
        for subscription in subscriptions:
            problem = endpoint_problem(subscription["endpoint"])  # again now: DNS may have changed
            if problem:
                failures.append(Outcome.permanent_failure(message, f"push refused: {problem}"))
                continue
            try:
                webpush(subscription, data=payload, vapid_private_key=vapid,
                        vapid_claims={"sub": settings.VAPID_SUBJECT}, ttl=self.ttl, timeout=10, headers=dict(headers),
                        requests_session=session)
                delivered += 1
            except Exception as exc:  # this browser alone: a bad key, a VAPID error, an expired subscription
                endpoint = subscription["endpoint"]
                shown = endpoint_summary(endpoint)
                path = urlsplit(endpoint).path
                hide = {endpoint: shown, **({path: shown} if len(path) > 8 else {})}
                failure = outcome_for_error(message, exc, hide=hide)
                if failure.extra.get("expired"):
                    expired.append(subscription["endpoint"])
                failures.append(failure)
        if delivered:
            return Outcome.sent(message, f"{delivered} browser(s)")
        error = "; ".join(f.error for f in failures)
        transient = [f for f in failures if not f.permanent]
        if transient:
            retry_after = max((f.retry_after for f in transient if f.retry_after), default=None)
            return Outcome.transient_failure(message, error, retry_after=retry_after,
                                             provider_failure=any(f.provider_failure for f in transient))
        return Outcome.permanent_failure(message, error)


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
        import_string(settings.INBOX_STORE)(messages)  # one write for the batch: it fails or succeeds whole
        return [Outcome.sent(m) for m in messages]
