"""Reads: who a notification reaches, what a user may see, how far a notification got.

`audience_users` and `inbox_unread_count` are the engine's (notifications.engine.audience and .inbox),
offered here to the doors.
"""

from datetime import timedelta

from django.contrib.auth import get_user_model
from django.db.models import Case, CharField, Count, F, IntegerField, Max, Min, OuterRef, Q, Subquery, Value, When
from django.db.models.functions import Coalesce
from django.utils import timezone
from django.utils.translation import gettext as _

from accounts.models import Cohort
from accounts.roles import is_admin
from channels_app.models import PushSubscription
from channels_app.registry import get_notifier

from .engine.audience import audience_users
from .engine.escalation import ESCALATION_WINDOW, escalation_delay
from .engine.inbox import inbox_unread_count
from .engine.planning import RECIPIENT_FIELDS, DeliveryPlanner
from .models import Delivery, InboxMessage, Notification, SmsReply

Reason = Delivery.Reason
# Rows whose reason answers "why not (yet)?": not made (skipped, cancelled), or held and still pending.
EXPLAINED = Q(status__in=Delivery.NOT_MADE_STATUSES) | Q(
    status__in=Delivery.PENDING_STATUSES, reason__in=[Reason.QUIET_HOURS, Reason.DIGEST])
# The reason, with `cancelled` for rows cancelled without one (Delivery.reason_code, in SQL).
REASON_CODE = Case(When(reason="", status=Delivery.Status.CANCELLED, then=Value(Reason.CANCELLED)),
                   default=F("reason"), output_field=CharField())


User = get_user_model()


def notifications_visible_to(user):
    """Notifications a user may see and act on as a sender or operator.

    Admin: all. With the emergency permission: every emergency alert too. Staff: those they sent, and
    those whose whole audience they manage — every
    cohort in it is one of theirs, nobody outside (no everyone, no role, no user outside
    their cohorts). A staff member of cohort A never reaches an administrator's
    notification to A and B, nor B's deliveries.
    """
    if is_admin(user):
        return Notification.objects.all()
    # Whoever may send and approve emergency alerts oversees all of them (the second person of the rule).
    emergency = (Q(notifier=Notification.EMERGENCY_NOTIFIER) if user.has_perm("notifications.send_emergency")
                 else Q(pk__in=[]))
    managed = Cohort.objects.filter(managers=user)
    links = Notification.cohorts.through.objects
    within = (Notification.objects
              .filter(pk__in=links.filter(cohort__in=managed).values("notification_id"))
              .exclude(pk__in=links.exclude(cohort__in=managed).values("notification_id"))
              .filter(Q(audience__everyone__isnull=True) | Q(audience__everyone=False))
              .exclude(audience__has_key="roles"))
    outside = _with_users_outside(within.filter(audience__has_key="users"), managed)
    return Notification.objects.filter(Q(sender=user) | Q(pk__in=within.exclude(pk__in=outside).values("pk"))
                                       | emergency)


def _with_users_outside(notifications, cohorts):
    """Primary keys of `notifications` whose audience names a user who is not a member of `cohorts`."""
    rows = [(pk, set(users or [])) for pk, users in notifications.values_list("pk", "audience__users")]
    named = sorted(set().union(*(users for _pk, users in rows)))
    inside = set()
    for start in range(0, len(named), 2000):
        inside.update(Cohort.members.through.objects
                      .filter(cohort__in=cohorts, user__username__in=named[start:start + 2000])
                      .values_list("user__username", flat=True))
    return [pk for pk, users in rows if users - inside]


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
    {"people": n, "channels": {channel: {"send": n, "digest": n, "skipped": n, "opted_out": n,
    "reasons": {reason: n}}}}: `skipped` counts every delivery not to be made, `opted_out` those
    the users turned off themselves, `reasons` all of them (held ones too) by Delivery.Reason.
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
            row = channels.setdefault(delivery.channel,
                                      {"send": 0, "digest": 0, "skipped": 0, "opted_out": 0, "reasons": {}})
            if delivery.reason:
                row["reasons"][delivery.reason] = row["reasons"].get(delivery.reason, 0) + 1
            if delivery.status == Delivery.Status.SKIPPED:
                row["skipped"] += 1
                row["opted_out"] += delivery.reason == Reason.OPTED_OUT
            elif delivery.digest:
                row["digest"] += 1
            else:
                row["send"] += 1
    return {"people": people, "channels": channels}


def reason_counts(notification):
    """{channel: {reason: n}} over the deliveries not made, or held, of one notification; one query."""
    counts = {}
    rows = (Delivery.objects.filter(EXPLAINED, notification=notification).annotate(code=REASON_CODE)
            .values("channel", "code").annotate(n=Count("id")).order_by())
    for row in rows:
        counts.setdefault(row["channel"], {})[row["code"] or ""] = row["n"]
    return counts


def unreached_reasons(notification):
    """Why recipients not reached were not: [{"reason", "label", "people"}], most people first.

    A person counts once per reason (an opt-out on email and a missing phone count under both).
    """
    reached = Delivery.objects.filter(notification=notification, status__in=Delivery.REACHED_STATUSES)
    rows = (Delivery.objects.filter(EXPLAINED, notification=notification)
            .exclude(recipient_id__in=reached.values("recipient_id")).annotate(code=REASON_CODE)
            .values("code").annotate(people=Count("recipient", distinct=True)).order_by())
    found = [{"reason": row["code"], "label": reason_label(row["code"]), "people": row["people"]} for row in rows]
    return sorted(found, key=lambda row: (-row["people"], row["reason"]))


def reason_label(code):
    """"opted out", "held for quiet hours": the label of a reason, to follow a count."""
    if not code:
        return _("skipped")  # rows from before reasons: their text is on each delivery
    label = str(Reason(code).label)
    return label[:1].lower() + label[1:]


def notification_reach(notification):
    """How far a notification got: recipients reached, and after how many seconds 50/95/100% were.

    Returns {"recipients", "reached", "share", "after": {50: seconds or None, 95: ..., 100: ...},
    "unreached": unreached_reasons(notification)}.
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
            "after": after, "unreached": unreached_reasons(notification)}


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


def recipient_explanation(notification, recipient):
    """Each requested channel (and every escalation rung) for one recipient: its state and why.

    Returns [{"channel", "escalation_level", "status", "reason", "reason_text", "delivery", ...}];
    a requested channel without a row yet reads `pending`, "not planned yet" until the fan-out
    has reached the recipient.
    """
    rows = list(Delivery.objects.filter(notification=notification, recipient=recipient)
                .order_by("escalation_level", "id"))
    lines = [{"channel": d.channel, "escalation_level": d.escalation_level, "status": d.status,
              "reason": d.reason_code, "reason_text": d.reason_text, "delivery": d.pk, "attempts": d.attempts,
              "next_attempt_at": d.next_attempt_at if d.status in Delivery.PENDING_STATUSES else None,
              "sent_at": d.sent_at, "delivered_at": d.delivered_at, "failed_at": d.failed_at,
              "last_error": d.last_error} for d in rows]
    planned = {d.channel for d in rows}
    for channel in notification.channels:
        if channel not in planned:
            text = "no delivery recorded" if notification.fanned_out_at else "not planned yet"
            lines.append({"channel": channel, "escalation_level": 0, "status": "pending", "reason": "",
                          "reason_text": text, "delivery": None, "attempts": 0, "next_attempt_at": None,
                          "sent_at": None, "delivered_at": None, "failed_at": None, "last_error": ""})
    return lines


def notification_recipient(notification, username):
    """The user `username` if they have a delivery of `notification` or are in its audience, else None."""
    user = User.objects.filter(username=username).first()
    if user is None:
        return None
    if Delivery.objects.filter(notification=notification, recipient=user).exists() \
            or audience_users(notification.audience).filter(pk=user.pk).exists():
        return user
    return None


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


def incident_thread(incident):
    """Every notification of `incident`'s thread, in the order they were sent (the Watch page's thread)."""
    return list(Notification.objects.filter(incident=incident).select_related("sender").order_by("created_at", "id"))


def inbox_thread(user_id, notification):
    """`user_id`'s inbox messages of the incident `notification` belongs to, in the order they were sent
    (the alert, its updates, the all-clear); [] outside an incident. Only what they received."""
    if not notification.incident_id:
        return []
    return list(InboxMessage.objects.filter(recipient_id=user_id, notification__incident_id=notification.incident_id)
                .select_related("notification").order_by("notification__created_at", "notification_id"))


# --- the console's home ------------------------------------------------------------------

def _count_of(deliveries):
    """A subquery: how many rows of `deliveries` (filtered on notification=OuterRef("pk")) there are."""
    return Coalesce(Subquery(deliveries.order_by().values("notification").annotate(n=Count("id")).values("n"),
                             output_field=IntegerField()), Value(0))


def notifications_with_reach(notifications):
    """`notifications` annotated with `reached`: how many of their recipients a delivery reached."""
    reached = (Delivery.objects.filter(notification=OuterRef("pk"), status__in=Delivery.REACHED_STATUSES)
               .order_by().values("notification").annotate(n=Count("recipient", distinct=True)).values("n"))
    return notifications.annotate(reached=Coalesce(Subquery(reached, output_field=IntegerField()), Value(0)))


def sends_running(user, *, limit=10):
    """The notifications `user` may see that are queued or sending now, newest first, with their progress:
    [{"notification", "progress": notification_progress(...)}]."""
    running = (notifications_visible_to(user).select_related("sender")
               .filter(status__in=[Notification.Status.QUEUED, Notification.Status.SENDING])
               .order_by("-created_at", "-pk")[:limit])
    return [{"notification": n, "progress": notification_progress(n)} for n in running]


def sends_recent(user, *, limit=20):
    """The last `limit` notifications `user` may see (scheduled ones excluded), each with `reached`."""
    return list(notifications_with_reach(notifications_visible_to(user)).select_related("sender")
                .exclude(status=Notification.Status.SCHEDULED).order_by("-created_at", "-pk")[:limit])


def sends_needing_action(user, *, now=None, days=7, limit=10):
    """What a console user should look at: {"failed": [...], "unacknowledged": [...], "awaiting": [...]}.

    `failed`: notifications of the last `days` that ended failed or partly failed, each with `failed_count`
    (its failed deliveries). `unacknowledged`: alerts asking for acknowledgement whose escalation delay has
    passed while people still have not acknowledged — [{"notification", "recipients", "acknowledged",
    "waiting", "overdue_since"}]. `awaiting`: emergency alerts awaiting a second person's approval.
    Only notifications `user` may see; at most `limit` of each.
    """
    now = now or timezone.now()
    visible = notifications_visible_to(user)
    failed = list(visible.filter(status__in=[Notification.Status.FAILED, Notification.Status.PARTIALLY_FAILED],
                                 created_at__gte=now - timedelta(days=days))
                  .annotate(failed_count=_count_of(Delivery.objects.filter(notification=OuterRef("pk"),
                                                                           status=Delivery.Status.FAILED)))
                  .order_by("-created_at", "-pk")[:limit])
    unacknowledged = []
    asking = (visible.filter(requires_ack=True, family_root__isnull=True, started_at__isnull=False,
                             started_at__gte=now - min(ESCALATION_WINDOW, timedelta(days=days)))
              .exclude(status=Notification.Status.CANCELLED).order_by("-started_at", "-pk"))
    for notification in asking[:100]:
        overdue_since = notification.started_at + escalation_delay(get_notifier(notification.notifier), notification)
        if overdue_since > now:
            continue
        counts = acknowledgement_counts(notification)
        if counts["waiting"]:
            unacknowledged.append({"notification": notification, "overdue_since": overdue_since, **counts})
            if len(unacknowledged) >= limit:
                break
    awaiting = list(visible.filter(status=Notification.Status.AWAITING_APPROVAL).select_related("sender")
                    .order_by("created_at", "pk")[:limit])
    return {"failed": failed, "unacknowledged": unacknowledged, "awaiting": awaiting}


def drills(user, *, year):
    """Exercise and test alerts of `year` that `user` may see, oldest first, for the Clery Act's yearly test:
    each with `reached` (people sent or delivered to) and `acknowledged` (people who acknowledged)."""
    def people(rows):
        return Coalesce(Subquery(rows.order_by().values("notification").annotate(
            n=Count("recipient", distinct=True)).values("n"), output_field=IntegerField()), Value(0))

    reached = people(Delivery.objects.filter(notification=OuterRef("pk"), status__in=Delivery.REACHED_STATUSES))
    acknowledged = people(InboxMessage.objects.filter(notification=OuterRef("pk"), acknowledged_at__isnull=False))
    return (notifications_visible_to(user)
            .filter(notifier=Notification.EMERGENCY_NOTIFIER, created_at__year=year,
                    alert_status__in=[Notification.AlertStatus.EXERCISE, Notification.AlertStatus.TEST])
            .select_related("sender", "approved_by")
            .annotate(reached=reached, acknowledged=acknowledged).order_by("created_at", "pk"))


def push_subscription_count(user):
    """How many browsers `user` receives web push on."""
    return PushSubscription.objects.filter(user=user).count()


# --- check-in roll call -------------------------------------------------------------------

CHECKIN_ANSWERS = (SmsReply.Kind.SAFE, SmsReply.Kind.NEED_HELP, SmsReply.Kind.OTHER)
ROLL_CALL_GROUPS = ("need_help", "safe", "other", "no_answer")
ROLL_CALL_NAMES = 500  # names listed per group; the counts are always whole


def notification_roll_call(notification, *, names=True):
    """The check-in roll call of an alert: who answered safe, need help, something else, and who has not.

    The base is the people the alert reached (a delivery sent or delivered on any channel) and anyone who
    answered it; each person's latest answer counts. Returns {"checkin": bool, "recipients": n,
    "<group>": {"count": n, "people": [{"id", "username", "name", "phone" (need_help only), "answer",
    "answered_at"}]}} for need_help, safe, other and no_answer; `names=False` gives the counts alone
    (what the ledger records). People are listed up to ROLL_CALL_NAMES a group.
    """
    reached = set(Delivery.objects.filter(notification=notification, status__in=Delivery.REACHED_STATUSES)
                  .order_by().values_list("recipient_id", flat=True).distinct())
    latest = {}
    for reply in (SmsReply.objects.filter(notification=notification, kind__in=CHECKIN_ANSWERS,
                                          recipient__isnull=False)
                  .order_by("recipient_id", "-received_at", "-pk")
                  .values("pk", "recipient_id", "kind", "body", "received_at")):
        latest.setdefault(reply["recipient_id"], reply)
    kind_group = {SmsReply.Kind.SAFE: "safe", SmsReply.Kind.NEED_HELP: "need_help", SmsReply.Kind.OTHER: "other"}
    members = {group: [] for group in ROLL_CALL_GROUPS}
    for person_id, reply in latest.items():
        members[kind_group[reply["kind"]]].append(person_id)
    members["no_answer"] = sorted(reached - set(latest))
    result = {"checkin": notification.checkin, "recipients": len(reached | set(latest))}
    shown = {group: ids[:ROLL_CALL_NAMES] for group, ids in members.items()} if names else {}
    people = {}
    if names:
        wanted = [person_id for ids in shown.values() for person_id in ids]
        for start in range(0, len(wanted), 2000):
            people.update((u.pk, u) for u in User.objects.filter(pk__in=wanted[start:start + 2000]).only(
                "pk", "username", "first_name", "last_name", "phone"))
    for group, ids in members.items():
        entry = {"count": len(ids)}
        if names:
            rows = []
            for person_id in shown[group]:
                user, reply = people.get(person_id), latest.get(person_id)
                if user is None:
                    continue
                row = {"id": user.pk, "username": user.username, "name": user.get_full_name() or user.username}
                if reply:
                    row.update(answer=reply["body"], answered_at=reply["received_at"])
                if group == "need_help":
                    row["phone"] = user.phone
                rows.append(row)
            entry["people"] = sorted(rows, key=lambda row: (row["name"].lower(), row["username"]))
        result[group] = entry
    return result
