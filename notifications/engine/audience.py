"""Who a notification's audience is, as a queryset of active users the fan-out can page through."""

from django.contrib.auth import get_user_model
from django.db.models import Q

from accounts.models import Cohort

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


def page_users(page):
    """The active users of a fan-out page (FanoutPage): its notification's audience, from after_pk to last_pk."""
    return audience_users(page.notification.audience).filter(pk__gt=page.after_pk, pk__lte=page.last_pk)
