"""`manage.py seed_demo` (what `make run` loads): the demo logins, including the two people an emergency exercise
needs (a drafter and, the admin, an approver) and an operator on duty, and the test list a Test alert goes to."""

import pytest
from django.core.management import call_command

from accounts.models import Cohort, Role, User
from notifications.models import Notification
from notifications.services import notification_approve, notification_send


@pytest.mark.django_db
def test_it_seeds_the_demo_twice_alike_with_the_people_an_emergency_exercise_needs(settings):
    call_command("seed_demo", stdout=open("/dev/null", "w"))
    call_command("seed_demo", stdout=open("/dev/null", "w"))  # idempotent

    drafter, admin, duty = (User.objects.get(username=name) for name in ("e1001", "admin", "o1001"))
    assert drafter.has_perm("notifications.send_emergency") and drafter.is_staff
    assert duty.has_role(Role.ON_DUTY) and not duty.has_perm("notifications.send_emergency")
    settings.EMERGENCY_TEST_COHORT = "emergency-test-list"
    assert set(Cohort.objects.get(code="emergency-test-list").members.values_list("username", flat=True)) == {
        "admin", "t1001", "e1001", "o1001"}

    alert, _ = notification_send(sender=drafter, notifier="security", title="Fire drill", body="Leave by stair B.",
                                 data={"severity": "high"}, audience={"cohorts": ["cs101-2026"]},
                                 alert_status="exercise")
    assert alert.status == Notification.Status.AWAITING_APPROVAL
    notification_approve(alert, by=admin)
    alert.refresh_from_db()
    assert alert.status == Notification.Status.QUEUED and alert.approved_by == admin
    test, _ = notification_send(sender=drafter, notifier="security", title="Siren test", body="Nothing to do.",
                                data={"severity": "low"}, audience={"cohorts": ["cs101-2026"]}, alert_status="test")
    assert test.audience == {"cohorts": ["emergency-test-list"]}
