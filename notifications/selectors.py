"""Reads: who a notification reaches, what a user may see, how far a notification got."""

from django.contrib.auth import get_user_model
from django.db.models import Count, Q

from accounts.models import Cohort, Role

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
