"""Writes on web push subscriptions (the browser's PushSubscription, as the Push API gives it).

The one way in for every door (the page's script, the API): the endpoint must be a browser's push
service (channels_app/push_hosts.py) and the keys what a browser makes, so the worker never posts
where a subscriber points it and pywebpush never chokes on a key.
"""

import base64
import binascii
import logging

from cryptography.hazmat.primitives.asymmetric import ec
from django.core.exceptions import ValidationError
from django.utils import timezone

from .models import PushSubscription
from .push_hosts import endpoint_problem

logger = logging.getLogger(__name__)


def _key_bytes(value, name, length):
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError, TypeError):
        raw = b""
    if len(raw) != length:
        raise ValidationError({name: [f"{name} must be {length} bytes, base64url-encoded."]}, code="invalid")
    return raw


def _check_keys(p256dh, auth):
    raw = _key_bytes(p256dh or "", "p256dh", 65)
    try:
        if raw[0] != 4:
            raise ValueError("not an uncompressed point")
        ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), raw)
    except ValueError:
        raise ValidationError({"p256dh": ["p256dh must be an uncompressed P-256 public key."]}, code="invalid")
    _key_bytes(auth or "", "auth", 16)


def push_subscription_save(*, user, endpoint, p256dh, auth, user_agent=""):
    """Store the browser subscription at `endpoint` for `user`. Returns (subscription, created).

    An endpoint another user registered stays theirs: the caller is answered as if it were saved
    (an unsaved subscription, created=True), so the answer tells nobody that it exists.
    """
    if not isinstance(endpoint, str) or not isinstance(p256dh, str) or not isinstance(auth, str):
        raise ValidationError({"endpoint": ["Give the endpoint and keys as strings."]}, code="invalid")
    problem = endpoint_problem(endpoint)
    if problem:
        raise ValidationError({"endpoint": [f"Refused: {problem}."]}, code="invalid")
    _check_keys(p256dh, auth)
    user_agent = (user_agent or "")[:300]
    existing = PushSubscription.objects.filter(endpoint=endpoint).first()
    if existing is not None and existing.user_id != user.pk:
        logger.warning("user %s registered a push endpoint that belongs to another user; kept with its owner",
                       user.pk, extra={"user_id": user.pk})
        return PushSubscription(user=user, endpoint=endpoint, p256dh=p256dh, auth=auth, user_agent=user_agent,
                                created_at=timezone.now()), True
    subscription, created = PushSubscription.objects.update_or_create(
        endpoint=endpoint, user=user, defaults={"p256dh": p256dh, "auth": auth, "user_agent": user_agent},
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
