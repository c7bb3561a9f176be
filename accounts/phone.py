"""Phone verification: a short code sent by SMS through the SMS channel, with limited attempts and expiry.

Services: `phone_verification_start(user, phone)` sends a code; `phone_verification_confirm(user, code)`
checks it and, on success, sets the user's phone and `phone_verified_at`.
"""

import hashlib
import hmac
import logging
import secrets
from datetime import timedelta
from types import SimpleNamespace

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db.models import F
from django.utils import timezone, translation
from django.utils.translation import gettext as _

from channels_app.base import Recipient
from channels_app.mixins import SMSMixin

from .models import PhoneVerification, User
from .validators import normalize_phone

logger = logging.getLogger(__name__)

CODE_DIGITS = 6


def _hash(verification_user_id, phone, code):
    message = f"{verification_user_id}:{phone}:{code}".encode()
    return hmac.new(settings.SECRET_KEY.encode(), message, hashlib.sha256).hexdigest()


def phone_code_send(*, user, phone, code):
    """Send the code through the SMS channel's own send step (twilio client, circuit breaker, config check).

    Returns the channel's Outcome.
    """
    with translation.override(user.language or "en"):
        text = _("Your FlashNotify code is %(code)s. It expires in %(minutes)d minutes.") % {
            "code": code, "minutes": settings.PHONE_CODE_TTL_SECONDS // 60}
    message = SimpleNamespace(
        delivery_id=None, channel="sms", content={"text": text},
        notification=SimpleNamespace(pk=None),
        recipient=Recipient(user_id=user.pk, username=user.username, phone=phone, language=user.language),
    )
    return next(iter(SMSMixin().send_sms([message])))


def phone_verification_start(*, user, phone, now=None):
    """Send a new code to `phone` for `user`. Raises ValidationError with a message the user can act on."""
    now = now or timezone.now()
    phone = normalize_phone(phone)
    if not phone:
        raise ValidationError({"phone": [_("Enter your mobile phone number.")]}, code="required")
    recent = PhoneVerification.objects.filter(user=user, created_at__gte=now - timedelta(days=1))
    latest = recent.order_by("-created_at").first()
    if latest and latest.created_at > now - timedelta(seconds=settings.PHONE_CODE_RESEND_SECONDS):
        raise ValidationError(_("A code was sent less than a minute ago. Wait a moment before asking for another."),
                              code="too_soon")
    if recent.count() >= settings.PHONE_CODES_PER_DAY:
        raise ValidationError(_("Too many codes were sent today. Try again tomorrow."), code="too_many")
    code = f"{secrets.randbelow(10 ** CODE_DIGITS):0{CODE_DIGITS}d}"
    verification = PhoneVerification.objects.create(
        user=user, phone=phone, code_hash=_hash(user.pk, phone, code),
        expires_at=now + timedelta(seconds=settings.PHONE_CODE_TTL_SECONDS),
    )
    # created_at is auto_now_add; keep it on the clock the caller gave.
    PhoneVerification.objects.filter(pk=verification.pk).update(created_at=now)
    outcome = phone_code_send(user=user, phone=phone, code=code)
    if not outcome.ok:
        verification.delete()
        logger.warning("phone code not sent to user %s: %s", user.pk, outcome.error, extra={"user_id": user.pk})
        if outcome.permanent:
            raise ValidationError({"phone": [_("We could not send a text message to this number. "
                                               "Check it and try again.")]}, code="not_sent")
        raise ValidationError(_("We could not send the code just now. Try again in a few minutes."), code="not_sent")
    logger.info("phone code sent to user %s", user.pk, extra={"user_id": user.pk})
    return verification


def phone_verification_pending(user, *, now=None):
    """The code the user may still enter, or None."""
    now = now or timezone.now()
    return (PhoneVerification.objects.filter(user=user, verified_at__isnull=True, expires_at__gt=now,
                                             attempts__lt=PhoneVerification.MAX_ATTEMPTS)
            .order_by("-created_at").first())


def phone_verification_confirm(*, user, code, now=None):
    """Check `code` against the user's latest code; on success the number becomes theirs, verified."""
    now = now or timezone.now()
    verification = (PhoneVerification.objects.filter(user=user, verified_at__isnull=True)
                    .order_by("-created_at").first())
    if verification is None:
        raise ValidationError(_("Ask for a code first."), code="no_code")
    if verification.expires_at <= now:
        raise ValidationError(_("This code has expired. Ask for a new one."), code="expired")
    # Claim an attempt before comparing: one conditional UPDATE, so simultaneous tries cannot
    # all read the same count and each be checked (the limit holds under concurrency).
    attempts = PhoneVerification.objects.filter(pk=verification.pk, attempts__lt=PhoneVerification.MAX_ATTEMPTS)
    if not attempts.update(attempts=F("attempts") + 1):
        raise ValidationError(_("Too many wrong codes. Ask for a new one."), code="too_many_attempts")
    expected = _hash(user.pk, verification.phone, "".join((code or "").split()))
    if not hmac.compare_digest(expected, verification.code_hash):
        used = PhoneVerification.objects.filter(pk=verification.pk).values_list("attempts", flat=True).first()
        left = PhoneVerification.MAX_ATTEMPTS - (used or PhoneVerification.MAX_ATTEMPTS)
        if left <= 0:
            raise ValidationError(_("Too many wrong codes. Ask for a new one."), code="too_many_attempts")
        raise ValidationError(
            translation.ngettext("This code is not right. You have %(left)d more try.",
                                 "This code is not right. You have %(left)d more tries.", left) % {"left": left},
            code="wrong_code")
    PhoneVerification.objects.filter(pk=verification.pk).update(verified_at=now)
    User.objects.filter(pk=user.pk).update(phone=verification.phone, phone_verified_at=now)
    user.phone, user.phone_verified_at = verification.phone, now
    logger.info("phone verified for user %s", user.pk, extra={"user_id": user.pk})
    return user
