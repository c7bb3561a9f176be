"""Invitations: a provisioned person who signs in with a password gets a link to choose it.

Every door that provisions people (`import_users`, the console import, `POST /api/v1/users/`) goes
through `users_upsert`, which hands the people it created to the workers after commit
(`invitations_enqueue`); a worker sends them with `invitations_send`, which the console's action,
`send_invitations` and the password reset form call too. Who is invited is decided in one place,
`invitation_skip_reason`.

The link carries the user id and a hash of the account's sign-in state (password, sign-in
version, email, active), signed and dated (`notifications.links`). Setting the password changes
the state, so a link works once, and no table is needed.
"""

import logging
import zoneinfo
from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.contrib.auth.hashers import UNUSABLE_PASSWORD_PREFIX
from django.core.mail import EmailMessage, get_connection
from django.db import transaction
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone, translation
from django.utils.crypto import salted_hmac
from django.utils.translation import gettext_lazy as _

from notifications.engine.queue import enqueue_invitations
from notifications.links import invitation_link_check, invitation_link_url

from .models import User
from .sso import sso_providers

logger = logging.getLogger(__name__)

SKIP_REASONS = {
    "inactive": _("inactive"),
    "no_email": _("no email address"),
    "has_password": _("already has a password"),
    "single_sign_on": _("signs in through single sign-on"),
}
FAILED = _("the email could not be sent")


def invitation_skip_reason(user):
    """Why `user` gets no invitation ("inactive", "no_email", "has_password", "single_sign_on"), or ""
    when they get one.

    The one place that decides who is invited: people who will sign in with a password they have
    not chosen yet. Someone the identity provider knows (an institutional id, from the roster or an
    earlier SSO sign-in) signs in through it instead while SSO is on and SSO_USERS_PASSWORD_SIGN_IN
    is off, so an invitation to choose a password would be of no use to them.
    """
    if not user.is_active:
        return "inactive"
    if not user.email:
        return "no_email"
    if user.has_usable_password():
        return "has_password"
    if (user.institutional_id or user.sso_provider) and sso_providers() and not settings.SSO_USERS_PASSWORD_SIGN_IN:
        return "single_sign_on"
    return ""


def user_needs_invitation(user):
    return not invitation_skip_reason(user)


def users_pending_invitation():
    """Active people with an email address and no password yet: those `send_invitations --all-pending` invites."""
    return (User.objects.filter(is_active=True, password__startswith=UNUSABLE_PASSWORD_PREFIX)
            .exclude(email="").order_by("username"))


@dataclass
class InvitationReport:
    sent: list = field(default_factory=list)      # users
    queued: list = field(default_factory=list)    # users handed to the workers
    skipped: dict = field(default_factory=dict)   # reason -> [users]
    failed: list = field(default_factory=list)    # users whose email could not be sent

    def skip(self, user, reason):
        self.skipped.setdefault(reason, []).append(user)

    @property
    def skipped_count(self):
        return sum(len(users) for users in self.skipped.values())

    def skipped_text(self):
        """"2 inactive (s4, s5); 1 already has a password (s1)": what was skipped and why, in the active language."""
        parts = []
        for reason, users in self.skipped.items():
            names = ", ".join(user.username for user in users[:10]) + (", …" if len(users) > 10 else "")
            parts.append(f"{len(users)} {SKIP_REASONS[reason]} ({names})")
        return "; ".join(parts)


def _account_state(user):
    value = f"{user.password}:{user.auth_version}:{user.email}:{user.is_active}"
    return salted_hmac("flashnotify.invitation.state", value, algorithm="sha256").hexdigest()[:24]


def invitation_url(user):
    return invitation_link_url(user_id=user.pk, state=_account_state(user))


def invitation_user(token):
    """(user, "") for a usable invitation token, or (None, problem): "invalid", "expired" or "used"."""
    check = invitation_link_check(token)
    if check.problem:
        return None, check.problem
    user = User.objects.filter(pk=check.user_id).first()
    if user is None or not user.is_active:
        return None, "invalid"
    if check.state != _account_state(user) or user.has_usable_password():
        return None, "used"
    return user, ""


def _invitation_message(user, *, requested, connection):
    with translation.override(user.language or settings.LANGUAGE_CODE):
        expires = timezone.localtime(timezone.now() + timedelta(days=settings.INVITATION_TTL_DAYS),
                                     zoneinfo.ZoneInfo(user.timezone or "UTC")).date()
        context = {"user": user, "name": user.get_full_name() or user.username, "url": invitation_url(user),
                   "expires": expires, "requested": requested,
                   "reset_url": settings.SITE_URL + reverse("password_reset")}
        subject = "".join(render_to_string("accounts/invitation_subject.txt", context).splitlines())
        body = render_to_string("accounts/invitation_email.txt", context)
    return EmailMessage(subject, body, to=[user.email], connection=connection)


def invitations_send(users, *, requested=False, defer=False):
    """Send each of `users` who needs one an invitation email, in their language; report the others and why.

    `requested`: the person asked for it (the password reset form), which the email says. `defer`:
    hand the emails to the workers after commit instead of sending them now (reported as queued).
    One email that cannot be sent is reported as failed and does not stop the others.
    """
    report = InvitationReport()
    ready = []
    for user in users:
        reason = invitation_skip_reason(user)
        if reason:
            report.skip(user, reason)
        else:
            ready.append(user)
    if defer:
        invitations_enqueue([user.pk for user in ready])
        report.queued = ready
        return report
    with get_connection() as connection:
        for user in ready:
            try:
                _invitation_message(user, requested=requested, connection=connection).send()
            except Exception:  # noqa: BLE001  (one address refused must not stop the batch)
                logger.exception("invitation to user %s could not be sent", user.pk, extra={"user_id": user.pk})
                report.failed.append(user)
            else:
                report.sent.append(user)
    logger.info("invitations: %d sent, %d skipped, %d failed", len(report.sent), report.skipped_count,
                len(report.failed))
    return report


def invitations_enqueue(user_ids):
    """Have the workers send these people their invitations once the current transaction commits."""
    user_ids = list(user_ids)
    if user_ids:
        transaction.on_commit(lambda: enqueue_invitations(user_ids))


def invitation_accept(*, user, password):
    """Set the invited person's password (which also raises their sign-in version, as any new password does)."""
    user.set_password(password)
    user.save(update_fields=["password"])
    logger.info("user %s accepted their invitation", user.pk, extra={"user_id": user.pk})
    return user
