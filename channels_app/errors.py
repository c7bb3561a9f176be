"""The one error classifier: whatever one message raises becomes that message's Outcome.

Every channel step sends each message in its own `try` and hands anything it catches to
`outcome_for_error`; the notifier's sequence does the same for rendering and for a step that
breaks as a whole. Only a provider's transient errors (a 5xx or 429 answer, a lost or refused
connection, a timeout) are retried; anything else — a bad key, a VAPID error, a header error,
a template error, an exception a client library was not expected to raise — fails the message
permanently with its reason, and the rest of the batch goes on.
"""

import logging
import smtplib
import socket
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime

from anymail.exceptions import AnymailAPIError, AnymailRecipientsRefused
from pywebpush import WebPushException
from requests.exceptions import RequestException
from twilio.base.exceptions import TwilioException, TwilioRestException

from .outcomes import Outcome

logger = logging.getLogger(__name__)

# Twilio error codes that will not succeed on retry (invalid or unreachable number, opted out).
TWILIO_PERMANENT_CODES = {21211, 21214, 21217, 21408, 21610, 21612, 21614, 30003, 30005, 30006}


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


def describe(exc):
    return f"{type(exc).__name__}: {exc}"


def _status_outcome(message, status, error, *, retry_after=None):
    """An HTTP answer from a provider: 429 and 5xx (or no answer) are transient, other 4xx permanent."""
    if status is not None and 400 <= status < 500 and status != 429:
        return Outcome.permanent_failure(message, error)
    return Outcome.transient_failure(message, error, retry_after=retry_after if status == 429 else None,
                                     provider_failure=status != 429)


def outcome_for_error(message, exc, *, headers=None, during="", hide=()):
    """The Outcome of `message` whose send (or render, `during="render"`) raised `exc`.

    `headers` are the provider's last response headers when the exception does not carry
    them (the twilio client), read for Retry-After. `hide` maps texts that must appear neither
    in the error nor in the log (a push endpoint is a bearer capability) to what stands for them.
    """
    prefix = f"cannot {during}: " if during else ""
    if isinstance(exc, AnymailRecipientsRefused):
        outcome = Outcome.permanent_failure(message, f"refused: {exc}")
    elif isinstance(exc, AnymailAPIError):
        response = getattr(exc, "response", None)
        status = getattr(exc, "status_code", None)
        retry_after = retry_after_seconds(response.headers) if response is not None else None
        if status and 400 <= status < 500 and status != 429:
            outcome = Outcome.permanent_failure(message, f"provider answered {status}: {exc}")
        else:
            outcome = Outcome.transient_failure(message, f"provider error: {exc}", provider_failure=status != 429,
                                                retry_after=retry_after)
    elif isinstance(exc, (smtplib.SMTPRecipientsRefused, smtplib.SMTPResponseException)):
        code = getattr(exc, "smtp_code", None)
        if isinstance(exc, smtplib.SMTPRecipientsRefused):
            code = next(iter(exc.recipients.values()), (None,))[0]
        if isinstance(code, int) and 500 <= code < 600:
            outcome = Outcome.permanent_failure(message, f"SMTP {code}: refused")
        else:
            outcome = Outcome.transient_failure(message, describe(exc), provider_failure=True)
    elif isinstance(exc, TwilioRestException):
        error = f"Twilio {exc.status}/{exc.code}: {exc.msg}"
        if exc.code in TWILIO_PERMANENT_CODES:
            outcome = Outcome.permanent_failure(message, error)
        else:
            outcome = _status_outcome(message, exc.status, error, retry_after=retry_after_seconds(headers))
    elif isinstance(exc, WebPushException):
        response = exc.response
        status = response.status_code if response is not None else None
        if status in (404, 410):
            outcome = Outcome.permanent_failure(message, f"subscription expired ({status})")
            outcome.extra["expired"] = True
        else:
            outcome = _status_outcome(message, status, f"push service answered {status}",
                                      retry_after=retry_after_seconds(response.headers) if status == 429 else None)
    elif isinstance(exc, (smtplib.SMTPException, RequestException, TwilioException, OSError, socket.timeout)):
        # The provider could not be reached or dropped the connection: worth another try.
        outcome = Outcome.transient_failure(message, describe(exc), provider_failure=True)
    else:
        outcome = Outcome.permanent_failure(message, prefix + describe(exc))
    for secret, shown in hide.items() if hide else ():
        if secret:
            outcome.error = outcome.error.replace(secret, shown)
    logger.warning("provider error on %s: %s", message.channel, outcome.error,
                   extra={"delivery_id": message.delivery_id, "channel": message.channel,
                          "notification_id": getattr(message.notification, "pk", None),
                          "permanent": outcome.permanent})
    return outcome
