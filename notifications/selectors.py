"""Reads: who a notification reaches, what a user may see, how far a notification got.

`audience_users` is the engine's (notifications.engine.audience), offered here to the doors.
"""

from django.contrib.auth import get_user_model
from django.db.models import Count, F, Max, Min, OuterRef, Q, Subquery

from accounts.roles import is_admin
from channels_app.registry import get_notifier

from .engine.audience import audience_users
from .engine.planning import RECIPIENT_FIELDS, DeliveryPlanner
from .models import Delivery, InboxMessage, Notification


User = get_user_model()


def notifications_visible_to(user):
    """Notifications a user may see as a sender or operator: Admin all, Staff their own and their cohorts'."""
    if is_admin(user):
        return Notification.objects.all()
    return Notification.objects.filter(
        Q(sender=user) | Q(pk__in=Notification.cohorts.through.objects.filter(cohort__managers=user)
                           .values("notification_id"))
    )


def delivery_counts(notification):
    """{channel: {status: count}} for one notification, in one query."""
    counts = {}
    rows = (Delivery.objects.filter(notification=notification).values("channel", "status")
            .annotate(n=Count("id")).order_by())
    for row in rows:
        counts.setdefault(row["channel"], {})[row["status"]] = row["n"]
    return counts


def notification_plan_counts(notification, recipients, *, chunk_size=2000):
    """What sending `notification` (saved or a draft) to `recipients` would produce, writing nothing.

    Runs the engine's DeliveryPlanner over the recipients chunk by chunk, so preferences,
    defaults, reachability and fallbacks count exactly as they will at fan-out. Returns
    {"people": n, "channels": {channel: {"send": n, "digest": n, "skipped": n}}}.
    """
    planner = DeliveryPlanner(notification, get_notifier(notification.notifier))
    recipients = recipients.order_by("pk").only(*RECIPIENT_FIELDS)
    people, channels, cursor = 0, {}, 0
    while True:
        users = list(recipients.filter(pk__gt=cursor)[:chunk_size])
        if not users:
            break
        cursor = users[-1].pk
        people += len(users)
        for delivery in planner.plan(users):
            row = channels.setdefault(delivery.channel, {"send": 0, "digest": 0, "skipped": 0})
            if delivery.status == Delivery.Status.SKIPPED:
                row["skipped"] += 1
            elif delivery.digest:
                row["digest"] += 1
            else:
                row["send"] += 1
    return {"people": people, "channels": channels}


def notification_reach(notification):
    """How far a notification got: recipients reached, and after how many seconds 50/95/100% were.

    Returns {"recipients", "reached", "share", "after": {50: seconds or None, 95: ..., 100: ...}}.
    """
    firsts = sorted(
        Delivery.objects.filter(notification=notification, status__in=Delivery.REACHED_STATUSES,
                                sent_at__isnull=False)
        .values("recipient_id").annotate(first=Min("sent_at")).order_by().values_list("first", flat=True)
    )
    total = notification.recipient_count or len(firsts)
    start = notification.started_at or notification.created_at
    after = {}
    for percent in (50, 95, 100):
        needed = max(1, -(-total * percent // 100)) if total else 0
        after[percent] = (max((firsts[needed - 1] - start).total_seconds(), 0.0)
                          if total and len(firsts) >= needed else None)
    return {"recipients": total, "reached": len(firsts), "share": (len(firsts) / total) if total else 0.0,
            "after": after}


def notification_progress(notification):
    """Deliveries done (no longer pending) out of all, with the fan-out state, for the progress bar."""
    counts = delivery_counts(notification)
    total = sum(sum(statuses.values()) for statuses in counts.values())
    pending = sum(statuses.get(status, 0) for statuses in counts.values() for status in Delivery.PENDING_STATUSES)
    fanned_out = bool(notification.fanned_out_at) or notification.is_final
    done = total - pending
    percent = 100 if (fanned_out and not pending) else (int(done * 100 / total) if total else 0)
    if not fanned_out:
        percent = min(percent, 99)
    return {"total": total, "done": done, "pending": pending, "fanned_out": fanned_out, "percent": percent,
            "status": notification.status, "final": notification.is_final or (fanned_out and not pending)}


def notification_acknowledgements(notification):
    """Its recipients, each annotated with `acknowledged_at` (None: not yet) and `escalation_level`
    (0: not escalated), acknowledged first then by name; one query. An acknowledgement of any message
    of the notification's family (the original, a resend) counts."""
    levels = (Delivery.objects.filter(notification=notification, recipient=OuterRef("pk")).values("recipient")
              .annotate(level=Max("escalation_level")).values("level"))
    acknowledged = (InboxMessage.objects.of_family(notification).acknowledged()
                    .filter(recipient=OuterRef("pk")).order_by("acknowledged_at"))
    return (User.objects.filter(pk__in=Delivery.objects.filter(notification=notification).values("recipient_id"))
            .annotate(acknowledged_at=Subquery(acknowledged.values("acknowledged_at")[:1]),
                      escalation_level=Subquery(levels[:1]))
            .order_by(F("acknowledged_at").asc(nulls_last=True), "last_name", "username"))


def acknowledgement_counts(notification):
    """{"recipients", "acknowledged", "waiting"} for one notification (people; the family's acknowledgements count)."""
    recipients = Delivery.objects.filter(notification=notification).order_by().values("recipient_id").distinct()
    total = recipients.count()
    acknowledged = (InboxMessage.objects.of_family(notification).acknowledged()
                    .filter(recipient_id__in=recipients).order_by().values("recipient_id").distinct().count())
    return {"recipients": total, "acknowledged": acknowledged, "waiting": total - acknowledged}


def inbox_message_for(user_id, notification_id):
    """`user_id`'s inbox message of a notification, or of its family when that one has none (a resend
    whose inbox copy was not written because the original's was there); None if neither."""
    messages = InboxMessage.objects.select_related("notification").filter(recipient_id=user_id)
    message = messages.filter(notification_id=notification_id).first()
    if message is None:
        notification = Notification.objects.filter(pk=notification_id).only("pk", "family_root_id").first()
        if notification is not None:
            message = (messages.filter(notification__in=Notification.objects.family_of(notification).values("pk"))
                       .order_by("created_at", "pk").first())
    return message
