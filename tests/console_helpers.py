"""Shared set-up for the console tests: two cohorts, each with a manager and students."""

from accounts.models import Cohort, Role
from notifications.models import Delivery, Notification

from .conftest import make_user


def two_cohorts(staff_user):
    """cs101 managed by `staff_user`, ma201 managed by someone else; two students each."""
    other_staff = make_user("t2000002", role=Role.STAFF, is_staff=True, email="other@example.edu")
    mine = Cohort.objects.create(code="cs101", name="Computer Science 101")
    theirs = Cohort.objects.create(code="ma201", name="Mathematics 201")
    mine.managers.add(staff_user)
    theirs.managers.add(other_staff)
    mine.members.add(make_user("s1000001"), make_user("s1000002"))
    theirs.members.add(make_user("s1000003"), make_user("s1000004"))
    return mine, theirs, other_staff


def sent_notification(cohort, sender, *, title="Room change", statuses=("sent", "sent"), channel="email", **fields):
    """A notification to `cohort` already fanned out, with one delivery per member in the given statuses."""
    notification = Notification.objects.create(
        notifier="academic", category="announcement", title=title, body="B12", channels=[channel],
        audience={"cohorts": [cohort.code]}, sender=sender, status=Notification.Status.SENDING,
        recipient_count=cohort.members.count(), **fields,
    )
    notification.cohorts.add(cohort)
    for member, status in zip(cohort.members.order_by("pk"), statuses):
        Delivery.objects.create(notification=notification, recipient=member, channel=channel, status=status)
    return notification
