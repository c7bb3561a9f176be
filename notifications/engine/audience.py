"""Who a notification's audience is, as a queryset of active users the fan-out can page through."""

from django.contrib.auth import get_user_model
from django.db.models import Q

from accounts.models import Cohort

User = get_user_model()


def audience_users(audience, *, after_pk=None, last_pk=None):
    """Active users in `audience` ({users: [username], cohorts: [code], roles: [name], everyone: bool}).

    Built from subqueries, not joins, so each user appears once however many cohorts
    they share, and the queryset can be paged by primary key. With `after_pk` and `last_pk`
    (a fan-out page) only the users with after_pk < pk <= last_pk, and each membership
    subquery is narrowed to that range too: a page reads its own members, not the whole
    cohort's (PostgreSQL would otherwise hash every membership row of the cohort for each page).
    """
    users = User.objects.filter(is_active=True)
    members = Q()
    if after_pk is not None:
        users, members = users.filter(pk__gt=after_pk), Q(user_id__gt=after_pk)
    if last_pk is not None:
        users, members = users.filter(pk__lte=last_pk), members & Q(user_id__lte=last_pk)
    if audience.get("everyone"):
        return users
    condition = Q(pk__in=[])
    if audience.get("users"):
        condition |= Q(username__in=audience["users"])
    if audience.get("cohorts"):
        condition |= Q(pk__in=Cohort.members.through.objects.filter(members, cohort__code__in=audience["cohorts"])
                       .values("user_id"))
    if audience.get("roles"):
        condition |= Q(pk__in=User.groups.through.objects.filter(members, group__name__in=audience["roles"])
                       .values("user_id"))
    return users.filter(condition)


def page_users(page):
    """The active users of a fan-out page (FanoutPage): its notification's audience, from after_pk to last_pk."""
    return audience_users(page.notification.audience, after_pk=page.after_pk, last_pk=page.last_pk)
