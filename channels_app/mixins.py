"""Channel mixins: each supplies one channel's send step (marked `@send_step`): messages -> [Outcome].

They talk to their provider through its real client and classify failures as permanent
(never retried) or transient (retried by the engine with backoff). The inbox channel
writes through the store named by the `INBOX_STORE` setting (a dotted path, the way Django
picks backends), so this layer knows nothing of the model that holds a student's inbox.
"""

import functools
import json
import logging
import re
import smtplib
import time
from email.utils import formatdate
from types import SimpleNamespace
from urllib.parse import urlsplit

from django.conf import settings
from django.core.mail import EmailMultiAlternatives, get_connection
from django.core.mail.backends.smtp import EmailBackend as SMTPBackend
from django.core.mail.message import sanitize_address
from django.urls import reverse
from django.utils.html import conditional_escape
from django.utils.module_loading import import_string
from py_vapid import Vapid02
from pywebpush import WebPusher, WebPushException
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client

from .base import SharedParts, checkin_prompt
from .config import EmailConfig, InboxConfig, PushConfig, SMSConfig
from .constants import Channel, Priority
from .decorators import circuit_breaker, rate_limit, validate_config
from .errors import TWILIO_PERMANENT_CODES, outcome_for_error, retry_after_seconds
from .models import PushSubscription
from .outcomes import Outcome
from .push_hosts import endpoint_problem, endpoint_summary
from .registry import ChannelMeta, send_step
from .sessions import ProviderSession, send_in_sessions, sessions_for

logger = logging.getLogger(__name__)
# SharedParts.PLACEHOLDER in the bytes of an email (its optional accent is two bytes in UTF-8)
BYTES_PLACEHOLDER = re.compile(
    SharedParts.MARK.encode() + rb"(\d+)((?:\xc3\xa9)?)(&amp;|&)" + SharedParts.MARK.encode())


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

    def email_bytes(self, message, skeletons):
        """(envelope sender, envelope recipient, bytes) of `message` for Django's SMTP backend, filled into the
        bytes built once for its group (`EmailSkeleton`); None when it needs Django's own build."""
        shape = message.shape
        if shape is None or shape.parts is None:
            return None
        if shape not in skeletons:
            skeletons[shape] = EmailSkeleton.build(self, message)
        skeleton = skeletons[shape]
        return skeleton.fill(message) if skeleton else None

    @send_step
    def send_email(self, messages):
        """Send the batch over EMAIL_SESSIONS connections at most (SMTP sessions or ESP clients), yielding
        as it goes; each connection sends its messages one by one, each in its own `try`.

        Over Django's SMTP backend, the bytes of an email are filled into those built once for its
        group of alike messages (EmailSkeleton); any other backend gets one Django email per message.
        """
        skeletons = {}
        yield from send_in_sessions(self, functools.partial(self._email_session, skeletons=skeletons), messages,
                                    sessions_for(len(messages), settings.EMAIL_SESSIONS))

    def _email_session(self, source, skeletons):
        """One connection: take messages from `source` until it is empty; one Outcome each."""
        connection = get_connection()
        try:
            connection.open()
        except (OSError, smtplib.SMTPException) as exc:
            source.cannot_connect = exc
            return
        fast = type(connection) is SMTPBackend
        try:
            for message in source:
                if not message.recipient.email:
                    yield Outcome.permanent_failure(message, "recipient has no email address")
                    continue
                try:
                    raw = self.email_bytes(message, skeletons) if fast else None
                    if raw is None:
                        email = self.build_email(message)
                        connection.send_messages([email])
                    else:
                        email = None
                        connection.connection.sendmail(raw[0], [raw[1]], raw[2])
                except Exception as exc:  # this message alone: a header error, a refusal, a lost connection
                    yield outcome_for_error(message, exc)
                    if isinstance(exc, (smtplib.SMTPServerDisconnected, OSError)):
                        connection.close()
                        try:
                            connection.open()
                        except (OSError, smtplib.SMTPException):
                            return  # what no session takes gets "connection lost"
                else:
                    yield Outcome.sent(message, esp_message_id(connection, email, message) if email else
                                       str(message.message_id))
        finally:
            connection.close()


class EmailSkeleton:
    """The bytes of one group's emails (SharedParts), built once by Django with placeholders, to fill per message.

    The placeholders of the group's parts stay in the bytes (7bit or 8bit transfer encoding), and the
    per-message headers — To, Message-ID, Date, List-Unsubscribe — get placeholders of their own. A
    group whose subject holds a per-recipient value (an encoded header), whose parts Django encodes
    (quoted-printable, base64), or a message whose values could make a line too long or need encoding
    (a non-ASCII address) goes through Django's own build instead.
    """

    TO, MESSAGE_ID, UNSUBSCRIBE, DATE = 100, 101, 102, 103
    LINE_LIMIT = 990  # RFC 5322 allows 998 octets a line; Django switches to quoted-printable beyond

    def __init__(self, pieces, longest_line, from_email):
        self.pieces, self.longest_line, self.from_email = pieces, longest_line, from_email
        self.date, self.date_at = "", 0

    @classmethod
    def build(cls, mixin, message):
        shape = message.shape
        if SharedParts.PLACEHOLDER.search(shape.parts["subject"]):
            return None
        token = functools.partial(SharedParts.placeholder, value="")
        stand_in = SimpleNamespace(
            message_id=token(cls.MESSAGE_ID), priority=message.priority,
            unsubscribe_url=token(cls.UNSUBSCRIBE) if message.unsubscribe_url else "",
            content=shape.parts, recipient=SimpleNamespace(email=token(cls.TO)), delivery_id=0)
        email = mixin.build_email(stand_in)
        email.extra_headers["Date"] = token(cls.DATE)
        data = email.message().as_bytes(linesep="\r\n")
        if re.search(rb"(?i)content-transfer-encoding:\s*(quoted-printable|base64)", data):
            return None
        pieces = BYTES_PLACEHOLDER.split(data)
        found = sorted(int(index) for index in pieces[1::4])
        expected = sorted([int(found[0]) for part in ("text", "html")
                           for found in SharedParts.PLACEHOLDER.findall(shape.parts[part])]
                          + [cls.TO, cls.MESSAGE_ID, cls.DATE] + ([cls.UNSUBSCRIBE] if message.unsubscribe_url else []))
        if found != expected:  # a placeholder cut or encoded on the way: Django builds these emails
            return None
        longest = max(len(line) for line in data.split(b"\r\n"))
        return cls(pieces, longest, sanitize_address(email.from_email, "utf-8"))

    def fill(self, message):
        email, message_id = message.recipient.email, str(message.message_id)
        headers = [email, message_id, message.unsubscribe_url or ""]
        if not all(value.isascii() and "\n" not in value and "\r" not in value for value in headers):
            return None  # Django's build encodes the address or refuses the header, with its reason
        values = SharedParts.values(message)
        now = time.time()
        if now - self.date_at >= 1:
            self.date, self.date_at = formatdate(now, localtime=settings.EMAIL_USE_LOCALTIME), now
        by_index = {self.TO: email, self.MESSAGE_ID: message_id, self.UNSUBSCRIBE: message.unsubscribe_url or "",
                    self.DATE: self.date}
        pieces = self.pieces
        out, added = [pieces[0]], 0
        for i in range(1, len(pieces), 4):
            index = int(pieces[i])
            if index < len(values):
                value = values[index]
                value = (str(conditional_escape(value)) if pieces[i + 2] == b"&amp;" else value).encode()
            else:
                value = by_index[index].encode()
            added += len(value)
            out.append(value)
            out.append(pieces[i + 3])
        if self.longest_line + added > self.LINE_LIMIT:  # as if every value were on the longest line
            return None
        return self.from_email, sanitize_address(email, "utf-8"), b"".join(out)


GSM7 = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿"
    "abcdefghijklmnopqrstuvwxyzäöñüà^{}\\[~]|€"
)


# GSM-7's extension table: each of these takes two of a segment's 160 (or 153) places.
GSM7_EXTENDED = set("^{}\\[~]|€")


def sms_count(text):
    """{"characters", "units", "segments", "encoding"} of `text` as an SMS: GSM-7 when every character
    is in its alphabet (160 units in one segment, 153 each when split; the extension table's take
    two), else UCS-2 (70, then 67; a character outside the BMP takes two). static/console/compose.js
    counts the same way."""
    gsm = all(char in GSM7 for char in text)
    if gsm:
        units, (single, multi) = sum(2 if char in GSM7_EXTENDED else 1 for char in text), (160, 153)
    else:
        units, (single, multi) = len(text.encode("utf-16-le")) // 2, (70, 67)
    segments = 0 if not units else 1 if units <= single else -(-units // multi)
    return {"characters": len(text), "units": units, "segments": segments, "encoding": "GSM-7" if gsm else "UCS-2"}


def fit_sms(text, max_segments, keep=""):
    """Cut `text` to at most `max_segments` SMS segments (GSM-7 or UCS-2), ending with '…' when cut.

    A `keep` that ends the text (a check-in question) stays whole: what comes before it is cut instead."""
    gsm = all(char in GSM7 for char in text)
    single, multi = (160, 153) if gsm else (70, 67)
    limit = single if max_segments <= 1 or len(text) <= single else multi * max_segments
    if len(text) <= limit:
        return text
    ellipsis = "..." if gsm else "…"
    if keep and text.endswith(keep) and len(keep) + len(ellipsis) < limit:
        head = text[: -len(keep)]
        return head[: limit - len(keep) - len(ellipsis)].rstrip() + ellipsis + keep
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

            def __init__(self, **kwargs):
                super().__init__(**kwargs)
                adapters, self.session = self.session.adapters, ProviderSession()
                self.session.adapters = adapters  # the connection pool twilio mounted

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
        """Send the batch over SMS_SESSIONS twilio clients at most, each one keep-alive HTTP session."""
        yield from send_in_sessions(self, self._sms_session, messages,
                                    sessions_for(len(messages), settings.SMS_SESSIONS))

    def _sms_session(self, source):
        client = self.twilio_client()
        callback = settings.SITE_URL + reverse("twilio-status")
        sender = ({"messaging_service_sid": settings.TWILIO_MESSAGING_SERVICE_SID}
                  if settings.TWILIO_MESSAGING_SERVICE_SID else {"from_": settings.TWILIO_FROM_NUMBER})
        for message in source:
            if not message.recipient.phone:
                yield Outcome.permanent_failure(message, "recipient has no verified phone number")
                continue
            prompt = checkin_prompt(message.notification, Channel.SMS, message.recipient.language)
            try:
                sent = client.messages.create(
                    to=message.recipient.phone, body=fit_sms(message.content["text"], settings.SMS_MAX_SEGMENTS,
                                                             keep=f" {prompt}" if prompt else ""),
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
        """Push the batch over PUSH_SESSIONS HTTP sessions at most; VAPID headers signed once per push service."""
        vapid = Vapid02.from_string(settings.VAPID_PRIVATE_KEY)  # parsed once per batch, not per push
        signed, expired = {}, []
        for message in messages:  # each push service's header signed here once, before the sessions share them
            for subscription in message.recipient.push_subscriptions:
                try:
                    self.vapid_headers(vapid, subscription["endpoint"], signed)
                except Exception:
                    pass  # kept in `signed`: each push to that service fails with it
        try:
            yield from send_in_sessions(self, functools.partial(self._push_session, vapid=vapid, signed=signed,
                                                                expired=expired),
                                        messages, sessions_for(len(messages), settings.PUSH_SESSIONS))
        finally:
            if expired:
                removed, _ = PushSubscription.objects.filter(endpoint__in=expired).delete()
                logger.info("removed %d expired push subscription(s)", removed,
                            extra={"notification_id": messages[0].notification.pk, "channel": Channel.PUSH})

    def _push_session(self, source, vapid, signed, expired):
        session = ProviderSession()  # one keep-alive connection pool per session
        try:
            for message in source:
                yield self._push_one(message, vapid, session, expired, signed)
        finally:
            session.close()

    def vapid_headers(self, vapid, endpoint, signed):
        """The VAPID Authorization header for the push service of `endpoint`, signed once per service and batch
        (valid 12 hours, as pywebpush signs it); a service whose claims cannot be signed fails each of its pushes."""
        url = urlsplit(endpoint)
        audience = f"{url.scheme}://{url.netloc}"
        if audience not in signed:
            try:
                signed[audience] = vapid.sign({"sub": settings.VAPID_SUBJECT, "aud": audience,
                                               "exp": int(time.time()) + 12 * 3600})
            except Exception as exc:
                signed[audience] = exc
        if isinstance(signed[audience], Exception):
            raise signed[audience]
        return signed[audience]

    def _push_one(self, message, vapid, session, expired, signed):
        """Push one message to each of its recipient's browsers: sent if any took it."""
        subscriptions = message.recipient.push_subscriptions
        if not subscriptions:
            return Outcome.permanent_failure(message, "recipient has no push subscription")
        try:
            payload = self.push_payload(message)
        except Exception as exc:
            return outcome_for_error(message, exc)
        delivered, failures = 0, []
        urgency = self.URGENCY[message.priority]
        for subscription in subscriptions:
            problem = endpoint_problem(subscription["endpoint"])  # again now: DNS may have changed
            if problem:
                failures.append(Outcome.permanent_failure(message, f"push refused: {problem}"))
                continue
            try:
                headers = {**self.vapid_headers(vapid, subscription["endpoint"], signed), "Urgency": urgency}
                # pywebpush's webpush() without signing the same claims again for every push
                response = WebPusher(subscription, requests_session=session).send(
                    payload, headers, ttl=self.ttl, content_encoding="aes128gcm", timeout=10)
                if response.status_code > 202:
                    raise WebPushException(f"Push failed: {response.status_code} {response.reason}\n"
                                           f"Response body:{response.text}", response=response)
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
