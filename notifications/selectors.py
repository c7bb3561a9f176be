"""Reads: who a notification reaches, what a user may see, how far a notification got."""

from django.contrib.auth import get_user_model
from django.db.models import Count, F, Max, OuterRef, Q, Subquery

from accounts.models import Cohort, Role
from channels_app.models import InboxMessage

from .models import Delivery, Notification

User = get_user_model()


def audience_users(audience):
    """Active users in `audience` ({users: [username], cohorts: [code], roles: [name], everyone: bool}).

    Built from subqueries, not joins, so each user appears once however many cohorts
    they share, and the queryset can be paged by primary key.
    """
    users = User.objects.filter(is_active=True)
    if audience.get("everyone"):
        return users
    condition = Q(pk__in=[])
    if audience.get("users"):
        condition |= Q(username__in=audience["users"])
    if audience.get("cohorts"):
        condition |= Q(pk__in=Cohort.members.through.objects.filter(cohort__code__in=audience["cohorts"])
                       .values("user_id"))
    if audience.get("roles"):
        condition |= Q(pk__in=User.groups.through.objects.filter(group__name__in=audience["roles"])
                       .values("user_id"))
    return users.filter(condition)


def is_admin(user):
    return user.is_superuser or user.groups.filter(name=Role.ADMIN).exists()


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


def notification_acknowledgements(notification):
    """Its recipients, each annotated with `acknowledged_at` (None: not yet) and `escalation_level`
    (0: not escalated), acknowledged first then by name; one query."""
    levels = (Delivery.objects.filter(notification=notification, recipient=OuterRef("pk")).values("recipient")
              .annotate(level=Max("escalation_level")).values("level"))
    acknowledged = InboxMessage.objects.filter(notification=notification, recipient=OuterRef("pk"))
    return (User.objects.filter(pk__in=Delivery.objects.filter(notification=notification).values("recipient_id"))
            .annotate(acknowledged_at=Subquery(acknowledged.values("acknowledged_at")[:1]),
                      escalation_level=Subquery(levels[:1]))
            .order_by(F("acknowledged_at").asc(nulls_last=True), "last_name", "username"))


def acknowledgement_counts(notification):
    """{"recipients", "acknowledged", "waiting"} for one notification."""
    recipients = Delivery.objects.filter(notification=notification).values("recipient_id").distinct().count()
    acknowledged = InboxMessage.objects.filter(notification=notification, acknowledged_at__isnull=False).count()
    return {"recipients": recipients, "acknowledged": acknowledged, "waiting": recipients - acknowledged}
