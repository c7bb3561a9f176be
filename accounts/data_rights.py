"""Data rights (GDPR, FERPA): a person's export and erasure, each recorded in the admin history.

Every door (the `export_user` and `erase_user` commands, the API's `users/{username}/export/` and
`users/{username}/erase/`) calls these, so what is exported, what is erased and what the history
records is the same whichever door a request uses. Retention is the engine's
(notifications.engine.retention).
"""

import logging

from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken, OutstandingToken

from channels_app.models import PushSubscription
from notifications.engine import notification_refresh_status
from notifications.models import (
    Delivery, InboxMessage, LedgerEntry, Notification, Preference, RecipientContext, SmsReply,
)

from .models import ApiKey, PhoneVerification, User

logger = logging.getLogger(__name__)

EXPORT_FORMAT = "flashnotify-user-export/1"
ERASED_TITLE = "(erased)"


def _iso(value):
    return value.isoformat() if value is not None else None


def _record(*, by, user, message):
    LogEntry.objects.log_actions(user_id=by.pk, queryset=[user], action_flag=CHANGE, change_message=message,
                                 single_object=True)


# --- export -------------------------------------------------------------------------------

def user_data_export(*, user, by):
    """Everything FlashNotify holds about `user`, as JSON-ready data (strings, numbers, lists, dicts).

    Push subscriptions appear as their push service's host and a short hash (an endpoint is a bearer
    capability), API keys by name and prefix (never their hash), phone codes by date (never the code).
    Recorded in the admin history as done by `by`.
    """
    data = {
        "format": EXPORT_FORMAT,
        "exported_at": _iso(timezone.now()),
        "profile": {
            "username": user.username, "first_name": user.first_name, "last_name": user.last_name,
            "email": user.email, "phone": user.phone, "is_active": user.is_active,
            "institutional_id": user.institutional_id, "single_sign_on": user.sso_provider or None,
            "kept_by_the_roster": user.roster_managed,
            "date_joined": _iso(user.date_joined), "last_login": _iso(user.last_login),
            "roles": sorted(user.groups.values_list("name", flat=True)),
        },
        "preferences": {
            "language": user.language, "timezone": user.timezone, "digest_hour": user.digest_hour,
            "quiet_hours_start": _iso(user.quiet_hours_start), "quiet_hours_end": _iso(user.quiet_hours_end),
            "channels": [
                {"category": p.category, "channel": p.channel, "enabled": p.enabled, "digest": p.digest}
                for p in Preference.objects.filter(user=user).order_by("category", "channel")
            ],
        },
        "phone_verification": {
            "phone": user.phone, "verified_at": _iso(user.phone_verified_at),
            "sms_stopped_at": _iso(user.sms_stopped_at),
            "codes": [
                {"phone": v.phone, "created_at": _iso(v.created_at), "expires_at": _iso(v.expires_at),
                 "verified_at": _iso(v.verified_at), "attempts": v.attempts}
                for v in PhoneVerification.objects.filter(user=user)
            ],
        },
        "cohorts": {
            "member": [{"code": c.code, "name": c.name} for c in user.cohorts.order_by("code")],
            "manager": [{"code": c.code, "name": c.name} for c in user.managed_cohorts.order_by("code")],
        },
        "push_subscriptions": [_push_subscription(s) for s in PushSubscription.objects.filter(user=user)
                               .order_by("created_at", "pk")],
        "api_keys": [
            {"name": k.name, "prefix": k.prefix, "scopes": k.scopes,
             "cohorts": sorted(c.code for c in k.cohorts.all()), "created_at": _iso(k.created_at),
             "expires_at": _iso(k.expires_at), "last_used_at": _iso(k.last_used_at), "revoked_at": _iso(k.revoked_at)}
            for k in ApiKey.objects.filter(user=user).prefetch_related("cohorts").order_by("created_at", "pk")
        ],
        "deliveries": [
            {"id": d.pk, "notification": d.notification_id, "notification_title": d.notification.title,
             "channel": d.channel, "status": d.status, "reason": d.reason_code, "reason_text": d.reason_text,
             "attempts": d.attempts, "created_at": _iso(d.created_at), "sent_at": _iso(d.sent_at),
             "delivered_at": _iso(d.delivered_at), "failed_at": _iso(d.failed_at)}
            for d in Delivery.objects.filter(recipient=user).select_related("notification")
            .only(*DELIVERY_EXPORT_FIELDS).order_by("pk").iterator(chunk_size=2000)
        ],
        "inbox": [
            {"id": m.pk, "notification": m.notification_id, "title": m.title, "body": m.body,
             "category": m.category, "created_at": _iso(m.created_at), "read_at": _iso(m.read_at),
             "acknowledged_at": _iso(m.acknowledged_at)}
            for m in InboxMessage.objects.filter(recipient=user).order_by("pk").iterator(chunk_size=2000)
        ],
        "acknowledgements": [
            {"notification": m.notification_id, "title": m.title, "acknowledged_at": _iso(m.acknowledged_at)}
            for m in InboxMessage.objects.filter(recipient=user).acknowledged().order_by("acknowledged_at", "pk")
        ],
        "sms_replies": [
            {"id": r.pk, "from": r.from_number, "body": r.body, "kind": r.kind, "notification": r.notification_id,
             "received_at": _iso(r.received_at)}
            for r in SmsReply.objects.filter(recipient=user).order_by("received_at", "pk")
        ],
        # Entries of the emergency alerts' compliance ledger that name them: as the actor (drafted, approved,
        # refused, sent...) or as the person whose check-in answer an entry records. Kept on erasure (a legal
        # obligation), so shown here.
        "compliance_ledger": [
            {"id": e.pk, "at": _iso(e.at), "event": e.event, "notification": e.notification_id,
             "incident": e.incident_id, "by": e.actor, "details": e.data}
            for e in ledger_entries_naming(user).order_by("pk")
        ],
        "personalisation": [
            {"notification": c.notification_id, "context": c.context}
            for c in RecipientContext.objects.filter(recipient=user).order_by("pk")
        ],
        "sent_notifications": [
            {"id": n.pk, "title": n.title, "status": n.status, "created_at": _iso(n.created_at)}
            for n in Notification.objects.filter(sender=user).only("pk", "title", "status", "created_at")
            .order_by("pk")
        ],
    }
    counts = {name: len(data[name]) for name in ("deliveries", "inbox", "push_subscriptions", "api_keys")}
    _record(by=by, user=user, message="Exported personal data: " + ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in counts.items())
            + ".")
    logger.info("user %s exported by %s", user.pk, by.pk, extra={"user_id": user.pk, "by_user_id": by.pk})
    return data


def ledger_entries_naming(user):
    """The compliance ledger's entries that name `user`: as their actor, or as the person who answered a check-in."""
    return LedgerEntry.objects.filter(Q(actor_id=user.pk) | Q(event=LedgerEntry.Event.CHECKIN, data__person=user.pk))


DELIVERY_EXPORT_FIELDS = (
    "id", "notification", "notification__title", "channel", "status", "reason", "skip_reason", "attempts",
    "created_at", "sent_at", "delivered_at", "failed_at",
)


def _push_subscription(subscription):
    host, _, digest = subscription.endpoint_summary.rpartition(" #")
    return {"host": host, "hash": digest, "user_agent": subscription.user_agent,
            "created_at": _iso(subscription.created_at)}


# --- erasure ------------------------------------------------------------------------------

def user_erase(*, user, by):
    """Erase `user`'s personal data, keeping the rows that make every notification's counts true.

    The account stays as an inactive, anonymous row (`erased-<id>`, no name, email, phone or password,
    no role, cohort, preference, push subscription, API key or phone code) so that its deliveries and
    inbox messages keep their recipient: delivery statuses and acknowledgements still count. Their
    content goes: inbox titles and bodies, provider ids, errors and reason details, per-recipient batch
    context. Deliveries still pending are cancelled (account inactive). Every session and token ends
    (`auth_version`, refresh tokens blacklisted); the admin history keeps no name of theirs and records
    the erasure as done by `by`. Returns counts of what it changed.

    The compliance ledger of emergency alerts is kept as it is (`ledger_entries_kept`: the entries that
    name the person as the one who drafted, approved, sent or cancelled an alert): keeping it at least
    LEDGER_RETENTION_YEARS is a legal obligation, which the right to erasure does not override (GDPR
    article 17(3)(b)). Its retention purge deletes those entries in their time.

    Raises ValidationError when `by` would erase their own account.
    """
    if user.pk == by.pk:
        raise ValidationError("You cannot erase your own account; ask another administrator.")
    now = timezone.now()
    with transaction.atomic():
        user = User.objects.select_for_update().get(pk=user.pk)
        old_username = user.username
        deliveries = Delivery.objects.filter(recipient=user)
        pending = list(deliveries.filter(status__in=[Delivery.Status.QUEUED, Delivery.Status.RETRYING])
                       .values_list("notification_id", flat=True).distinct())
        done = {
            "deliveries_cancelled": deliveries.filter(status__in=[Delivery.Status.QUEUED, Delivery.Status.RETRYING])
            .update(status=Delivery.Status.CANCELLED, reason=Delivery.Reason.ACCOUNT_INACTIVE, enqueued_at=None,
                    updated_at=now),
            "deliveries": deliveries.update(provider_message_id="", last_error="", skip_reason="", updated_at=now),
            "inbox_messages": InboxMessage.objects.filter(recipient=user).update(title=ERASED_TITLE, body=""),
            # What they texted us goes; the kind of answer stays, so the roll call of an alert stays true.
            "sms_replies": SmsReply.objects.filter(recipient=user).update(from_number="", to_number="", body=""),
        }
        RecipientContext.objects.filter(recipient=user).delete()
        Preference.objects.filter(user=user).delete()
        PhoneVerification.objects.filter(user=user).delete()
        erased_objects = {
            PushSubscription: list(PushSubscription.objects.filter(user=user).values_list("pk", flat=True)),
            ApiKey: list(ApiKey.objects.filter(user=user).values_list("pk", flat=True)),
        }
        done["push_subscriptions"], _ = PushSubscription.objects.filter(user=user).delete()
        done["api_keys"] = len(erased_objects[ApiKey])
        ApiKey.objects.filter(user=user).delete()
        BlacklistedToken.objects.bulk_create(
            [BlacklistedToken(token=token) for token in OutstandingToken.objects.filter(user=user)
             .exclude(blacklistedtoken__isnull=False)], ignore_conflicts=True)

        user.username = f"erased-{user.pk}"
        user.first_name = user.last_name = user.email = user.phone = user.sso_provider = ""
        # The identity provider's and the roster's id is personal data too: once erased, a sign-in or a
        # roster that still names the person starts a new account instead of reviving this one.
        user.institutional_id, user.roster_managed = None, False
        user.phone_verified_at = user.quiet_hours_start = user.quiet_hours_end = user.last_login = None
        user.sms_stopped_at = None
        user.language, user.timezone = User.Language.ENGLISH, "UTC"
        user.digest_hour = User._meta.get_field("digest_hour").default
        user.is_active = user.is_staff = user.is_superuser = False
        user.set_unusable_password()  # with the deactivation, raises auth_version: every session and token ends
        user.save()
        user.groups.clear()
        user.user_permissions.clear()
        user.cohorts.clear()
        user.managed_cohorts.clear()

        done["audiences"] = _audiences_rename(old_username, user.username)
        done["ledger_entries_kept"] = ledger_entries_naming(user).count()
        _history_anonymise(user, erased_objects)
        _record(by=by, user=user, message="Erased personal data: " + ", ".join(
            f"{n} {k.replace('_', ' ')}" for k, n in done.items() if k != "ledger_entries_kept")
            + f"; {done['ledger_entries_kept']} compliance ledger entries naming them kept (a legal obligation).")
    for notification in Notification.objects.filter(pk__in=pending):
        notification_refresh_status(notification)
    logger.info("user %s erased by %s", user.pk, by.pk, extra={"user_id": user.pk, "by_user_id": by.pk, **done})
    return {"username": user.username, **done}


def _audiences_rename(old, new):
    """Notifications that named the person in their audience name the anonymous account instead."""
    renamed = []
    # JSON containment is not portable (SQLite); the text match narrows, the Python check decides.
    for notification in Notification.objects.filter(audience__has_key="users", audience__icontains=old) \
            .only("pk", "audience"):
        users = notification.audience.get("users") or []
        if old in users:
            notification.audience = {**notification.audience, "users": [new if u == old else u for u in users]}
            renamed.append(notification)
    Notification.objects.bulk_update(renamed, ["audience"], batch_size=500)
    return len(renamed)


def _history_anonymise(user, erased_objects):
    """Admin-history entries name objects as they were shown: the user's name, its keys' and subscriptions'."""
    types = ContentType.objects.get_for_models(User, *erased_objects)
    LogEntry.objects.filter(content_type=types[User], object_id=str(user.pk)).update(object_repr=str(user))
    for model, pks in erased_objects.items():
        for start in range(0, len(pks), 500):
            LogEntry.objects.filter(content_type=types[model], object_id__in=[str(pk) for pk in pks[start:start + 500]]) \
                .update(object_repr=ERASED_TITLE)
