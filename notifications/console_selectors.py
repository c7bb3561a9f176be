"""Reads for the console's Watch, person and export pages: what a notification reached, per channel and
escalation rung, who acknowledged it, and what one person gets and why not.

Totals are the audience's: counted once when the fan-out starts (Notification.recipient_count), so
they never grow while the fan-out pages are planned; before that, the audience is counted live.
"""

from django.contrib.auth import get_user_model
from django.db.models import Count, Q
from django.utils.translation import gettext as _

from accounts.models import Cohort
from accounts.roles import is_admin
from channels_app.constants import Channel
from channels_app.models import PushSubscription

from .engine.audience import audience_users
from .models import Delivery, Notification
from .selectors import acknowledgement_counts, notification_acknowledgements, notifications_visible_to

User = get_user_model()
Status = Delivery.Status


def reason_name(code, detail=""):
    """A reason as a person reads it, in the viewer's language: the label of its code, else the engine's text."""
    if code:
        return str(Delivery.Reason(code).label)
    return detail or _("Skipped (see the delivery)")


def channel_name(channel):
    return str(Channel(channel).label) if channel in Channel.values else channel


def audience_size(notification):
    """How many people the notification is for: fixed once its fan-out started, counted live before."""
    if notification.started_at or notification.fanned_out_at:
        return notification.recipient_count
    return audience_users(notification.audience).count()


def watch_progress(notification):
    """Where a notification stands, in people out of its audience (a total that never grows).

    Returns {"status", "status_label", "state" (awaiting [approval], scheduled, waiting, running, finished,
    cancelled, cancelled_before_start),
    "audience", "reached", "settled" (people with nothing pending), "pending" (deliveries),
    "percent", "final", "scheduled_for"}. `percent` is the settled share while it runs, 100 when
    finished, and the reached share of a cancelled notification (it stopped short).
    """
    people = (Delivery.objects.filter(notification=notification).values("recipient_id")
              .annotate(waiting=Count("id", filter=Q(status__in=Delivery.PENDING_STATUSES)),
                        made=Count("id", filter=Q(status__in=Delivery.REACHED_STATUSES))).order_by())
    totals = people.aggregate(people=Count("recipient_id"), settled=Count("recipient_id", filter=Q(waiting=0)),
                              reached=Count("recipient_id", filter=Q(made__gt=0)))
    pending = Delivery.objects.filter(notification=notification, status__in=Delivery.PENDING_STATUSES).count()
    audience = max(audience_size(notification), 0)
    settled, reached = totals["settled"] or 0, totals["reached"] or 0
    fanned_out = bool(notification.fanned_out_at)
    status = notification.status
    if status == Notification.Status.CANCELLED:
        state = "cancelled" if totals["people"] or notification.started_at else "cancelled_before_start"
    elif status == Notification.Status.SCHEDULED:
        state = "scheduled"
    elif status == Notification.Status.AWAITING_APPROVAL:
        state = "awaiting"
    elif notification.is_final or (fanned_out and not pending):
        state = "finished"
    elif totals["people"]:
        state = "running"
    else:
        state = "waiting"
    if state == "finished":
        percent = 100
    elif state in ("cancelled", "cancelled_before_start"):
        percent = int(reached * 100 / audience) if audience else 0
    else:
        percent = min(int(settled * 100 / audience), 99) if audience else 0
    labels = dict(Notification.Status.choices)
    if state == "running" and status == Notification.Status.QUEUED:
        status = Notification.Status.SENDING  # deliveries are moving: never "Queued, 0 of 0"
    return {"status": status, "status_label": str(labels[status]), "state": state, "audience": audience,
            "reached": reached, "settled": settled, "pending": pending, "percent": percent,
            "final": state in ("finished", "cancelled", "cancelled_before_start"),
            "scheduled_for": notification.scheduled_for}


def channel_rows(notification):
    """One row per channel of the first send, then one per escalation rung: [{"channel", "level", "label",
    "counts": {status: n}, "total"}]. A rung is its own row, so "email sent 17" never adds two sends up."""
    rows = {}
    for row in (Delivery.objects.filter(notification=notification).values("channel", "escalation_level", "status")
                .annotate(n=Count("id")).order_by()):
        key = (row["escalation_level"], row["channel"])
        entry = rows.setdefault(key, {"channel": row["channel"], "level": row["escalation_level"], "counts": {},
                                      "total": 0})
        entry["counts"][row["status"]] = row["n"]
        entry["total"] += row["n"]
    result = []
    for (level, channel), entry in sorted(rows.items()):
        entry["label"] = (channel_name(channel) if not level else
                          _("Escalation %(level)d: %(channel)s") % {"level": level, "channel": channel_name(channel)})
        result.append(entry)
    return result


def reason_rows(notification):
    """Why deliveries were not made (or not yet): {"columns": [(key, label)], "rows": [{"code", "label", "counts"}]},
    a column per channel and escalation rung, a row per reason, labels in the viewer's language."""
    counts, columns = {}, set()
    for row in (Delivery.objects.filter(Q(status__in=Delivery.NOT_MADE_STATUSES)
                                        | Q(status__in=Delivery.PENDING_STATUSES,
                                            reason__in=[Delivery.Reason.QUIET_HOURS, Delivery.Reason.DIGEST]),
                                        notification=notification)
                .values("channel", "escalation_level", "status", "reason").annotate(n=Count("id")).order_by()):
        code = row["reason"] or (Delivery.Reason.CANCELLED if row["status"] == Status.CANCELLED else "")
        column = (row["escalation_level"], row["channel"])
        columns.add(column)
        by_column = counts.setdefault(code, {})
        by_column[column] = by_column.get(column, 0) + row["n"]
    columns = sorted(columns)
    labels = [(f"{channel}-{level}", channel_name(channel) if not level else
               _("Escalation %(level)d: %(channel)s") % {"level": level, "channel": channel_name(channel)})
              for level, channel in columns]
    rows = [{"code": code or "other", "label": reason_name(code),
             "counts": [counts[code].get(column, 0) for column in columns]} for code in sorted(counts)]
    return {"columns": labels, "rows": rows}


def failed_deliveries(notification, *, limit=100):
    return list(Delivery.objects.filter(notification=notification, status=Status.FAILED)
                .select_related("recipient").order_by("-failed_at", "-id")[:limit])


def acknowledgement_list(notification, *, search="", which=""):
    """The recipients with `acknowledged_at` (None: not yet), searched by name, username or email;
    `which` is "acknowledged", "waiting" or "" (everyone)."""
    people = notification_acknowledgements(notification)
    if search:
        people = people.filter(Q(username__icontains=search) | Q(first_name__icontains=search)
                               | Q(last_name__icontains=search) | Q(email__icontains=search))
    if which == "acknowledged":
        people = people.filter(acknowledged_at__isnull=False)
    elif which == "waiting":
        people = people.filter(acknowledged_at__isnull=True)
    return people


def watch_actions(notification, *, acks=None):
    """Which of the Watch page's actions can act now: {"retry", "cancel", "resend"} (booleans).
    `acks`: acknowledgement_counts(notification), when the caller has it already."""
    live = notification.status != Notification.Status.CANCELLED
    failed = live and Delivery.objects.filter(notification=notification, status=Status.FAILED).exists()
    waiting = (live and notification.requires_ack and bool(notification.fanned_out_at)
               and (acks or acknowledgement_counts(notification))["waiting"] > 0)
    return {"retry": failed, "resend": waiting,
            "cancel": notification.status in (Notification.Status.AWAITING_APPROVAL, Notification.Status.SCHEDULED,
                                              Notification.Status.QUEUED, Notification.Status.SENDING)}


def delivery_export(notification):
    """Every delivery of a notification, for a CSV export: an iterator of rows (a header first), read in chunks."""
    yield [_("Delivery"), _("Username"), _("Name"), _("Email"), _("Channel"), _("Escalation rung"), _("Status"),
           _("Reason"), _("Details"), _("Attempts"), _("Sent at"), _("Delivered at"), _("Failed at"),
           _("Provider's error")]
    statuses = dict(Delivery.Status.choices)
    deliveries = (Delivery.objects.filter(notification=notification).select_related("recipient").order_by("pk")
                  .only("pk", "channel", "escalation_level", "status", "reason", "skip_reason", "attempts", "sent_at",
                        "delivered_at", "failed_at", "last_error", "recipient__username", "recipient__first_name",
                        "recipient__last_name", "recipient__email"))
    for d in deliveries.iterator(chunk_size=2000):
        code = d.reason_code
        yield [d.pk, d.recipient.username, d.recipient.get_full_name(), d.recipient.email, channel_name(d.channel),
               d.escalation_level, str(statuses.get(d.status, d.status)), reason_name(code) if code else "",
               d.skip_reason, d.attempts, d.sent_at and d.sent_at.isoformat(),
               d.delivered_at and d.delivered_at.isoformat(), d.failed_at and d.failed_at.isoformat(), d.last_error]


# --- people ------------------------------------------------------------------------------------

def people_visible_to(user):
    """People a console user may look up: Admin everyone; Staff themselves and the members of their cohorts."""
    if is_admin(user):
        return User.objects.all()
    members = Cohort.members.through.objects.filter(cohort__managers=user).values("user_id")
    return User.objects.filter(Q(pk=user.pk) | Q(pk__in=members))


def people_search(viewer, query, *, limit=50):
    people = people_visible_to(viewer)
    for word in query.split():
        people = people.filter(Q(username__icontains=word) | Q(first_name__icontains=word)
                               | Q(last_name__icontains=word) | Q(email__icontains=word))
    return list(people.order_by("last_name", "first_name", "username")[:limit])


def person_reachability(person):
    """{"email", "phone", "phone_verified", "push_subscriptions", "active"}: what the engine checks before a channel."""
    return {"email": person.email, "phone": person.phone, "phone_verified": bool(person.phone and
                                                                                   person.phone_verified_at),
            "phone_verified_at": person.phone_verified_at,
            "push_subscriptions": PushSubscription.objects.filter(user=person).count(), "active": person.is_active}


def person_deliveries(viewer, person, *, limit=50):
    """The person's last deliveries of notifications the viewer may see, newest first, each with its reason."""
    deliveries = Delivery.objects.filter(recipient=person).select_related("notification").order_by("-created_at", "-id")
    if not is_admin(viewer):
        deliveries = deliveries.filter(notification__in=notifications_visible_to(viewer).values("pk"))
    return list(deliveries[:limit])


def person_cohorts(person):
    return list(Cohort.objects.filter(members=person).order_by("code"))
