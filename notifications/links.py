"""Signed, expiring links in messages: acknowledge an alert, unsubscribe from a category, accept an invitation.

A token signs "<user id>:<notification id>" with a salt per action, so one action's token
never opens another. `link_url` is the one place links are made (messages and previews).
An invitation's token signs "<user id>:<account state>" instead (`invitation_link_url`): the
account service compares the state, so a link stops working once the password is set.
"""

import functools
from dataclasses import dataclass

from django.conf import settings
from django.core.signing import BadSignature, SignatureExpired, TimestampSigner
from django.urls import get_script_prefix, get_urlconf, reverse

MAX_AGE = {
    "acknowledge": 7 * 24 * 3600,
    "unsubscribe": 365 * 24 * 3600,
}


@dataclass
class LinkCheck:
    user_id: int | None = None
    notification_id: int | None = None
    problem: str = ""  # "", "expired", "invalid" or "preview"; for an invitation also "used"
    state: str = ""  # an invitation's account state


def _signer(action):
    return TimestampSigner(salt=f"flashnotify.{action}")


def link_token(action, *, user_id, notification_id):
    return _signer(action).sign(f"{user_id}:{notification_id}")


PREVIEW_TOKEN = "preview"  # never a signed token (those hold a ":"): its page says so and changes nothing


def link_url(action, *, user_id, notification_id, preview=False):
    """The absolute URL of a signed link. A preview (and a draft, which has no id yet) gets a placeholder:
    a preview is read by staff, and a live link in it would act for the recipient."""
    if preview or not notification_id:
        token = PREVIEW_TOKEN
    else:
        token = link_token(action, user_id=user_id, notification_id=notification_id)
    return settings.SITE_URL + _path_around_token(action, get_script_prefix(), get_urlconf()).replace(
        _TOKEN_SLOT, token, 1)


_TOKEN_SLOT = "token-slot"  # letters reverse() leaves as they are, like a token's [A-Za-z0-9:_-]


@functools.lru_cache(maxsize=64)
def _path_around_token(action, script_prefix, urlconf):
    """The action's path with a slot for the token: reversed once, not once per message."""
    return reverse(action, args=[_TOKEN_SLOT], urlconf=urlconf)


def link_check(action, token):
    """Who and what a token is for, or why it cannot be used ("preview": a preview's placeholder)."""
    if token == PREVIEW_TOKEN:
        return LinkCheck(problem="preview")
    try:
        value = _signer(action).unsign(token, max_age=MAX_AGE[action])
        user_id, notification_id = (int(part) for part in value.split(":"))
    except SignatureExpired:
        return LinkCheck(problem="expired")
    except (BadSignature, ValueError):
        return LinkCheck(problem="invalid")
    return LinkCheck(user_id=user_id, notification_id=notification_id)


def invitation_link_url(*, user_id, state):
    """The absolute URL of a set-password link for `user_id` while its account is in `state`."""
    token = _signer("invitation").sign(f"{user_id}:{state}")
    return settings.SITE_URL + reverse("invitation", args=[token])


def invitation_link_check(token):
    """Whose invitation a token is and the account state it was made for, or why it cannot be used."""
    try:
        value = _signer("invitation").unsign(token, max_age=settings.INVITATION_TTL_DAYS * 24 * 3600)
        user_id, state = value.split(":")
        return LinkCheck(user_id=int(user_id), state=state)
    except SignatureExpired:
        return LinkCheck(problem="expired")
    except (BadSignature, ValueError):
        return LinkCheck(problem="invalid")
