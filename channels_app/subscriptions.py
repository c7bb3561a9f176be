"""Writes on web push subscriptions (the browser's PushSubscription, as the Push API gives it)."""

import base64
import binascii
import logging
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError

from .models import PushSubscription

logger = logging.getLogger(__name__)


def _key_bytes(value, name, length):
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError, TypeError):
        raw = b""
    if len(raw) != length:
        raise ValidationError({name: [f"{name} must be {length} bytes, base64url-encoded."]}, code="invalid")
    return value


def push_subscription_save(*, user, endpoint, p256dh, auth, user_agent=""):
    """Store (or move to `user`) the browser subscription at `endpoint`. Returns (subscription, created)."""
    parts = urlsplit(endpoint or "")
    allowed = ("https", "http") if settings.PUSH_ALLOW_HTTP_ENDPOINTS else ("https",)
    if parts.scheme not in allowed or not parts.netloc or len(endpoint) > 1000:
        raise ValidationError({"endpoint": ["The endpoint must be an https URL of a push service."]}, code="invalid")
    _key_bytes(p256dh or "", "p256dh", 65)
    _key_bytes(auth or "", "auth", 16)
    subscription, created = PushSubscription.objects.update_or_create(
        endpoint=endpoint,
        defaults={"user": user, "p256dh": p256dh, "auth": auth, "user_agent": (user_agent or "")[:300]},
    )
    logger.info("push subscription %s for user %s", "created" if created else "updated", user.pk,
                extra={"user_id": user.pk})
    return subscription, created


def push_subscription_delete(*, user, endpoint=None, subscription_id=None):
    """Remove one of `user`'s subscriptions, by endpoint or id. Returns how many were removed."""
    subscriptions = PushSubscription.objects.filter(user=user)
    if endpoint:
        subscriptions = subscriptions.filter(endpoint=endpoint)
    elif subscription_id:
        subscriptions = subscriptions.filter(pk=subscription_id)
    else:
        return 0
    removed, _ = subscriptions.delete()
    return removed
