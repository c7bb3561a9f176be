"""The Watch page, the progress endpoint and the changelist at a glance."""

from datetime import timedelta

import pytest
from django.utils import timezone

from accounts.models import Cohort
from notifications.models import Delivery, InboxMessage, Notification

from .conftest import make_user
from .console_helpers import sent_notification, two_cohorts


@pytest.fixture
def watched(db, admin_user):
    """A notification to four students reached after 1, 2, 5 and 10 seconds, one of them failing on SMS."""
    cohort = Cohort.objects.create(code="ph301", name="Physics 301")
    students = [make_user(f"s500000{n}") for n in range(4)]
    cohort.members.add(*students)
    started = timezone.now() - timedelta(minutes=5)
    notification = Notification.objects.create(
        notifier="academic", category="grade", title="Grades are out", body="See the portal.", channels=["email", "sms"],
        audience={"cohorts": ["ph301"]}, sender=admin_user, status=Notification.Status.PARTIALLY_FAILED,
        recipient_count=4, started_at=started, fanned_out_at=started, completed_at=started, requires_ack=True,
    )
    for student, seconds in zip(students, (1, 2, 5, 10)):
        Delivery.objects.create(notification=notification, recipient=student, channel="email", status="sent",
                                sent_at=started + timedelta(seconds=seconds))
    Delivery.objects.create(notification=notification, recipient=students[0], channel="sms", status="failed",
                            last_error="Twilio 400/21211: The 'To' number is not a valid phone number.")
    InboxMessage.objects.create(notification=notification, recipient=students[0], title="t", body="b",
                                category="grade", acknowledged_at=timezone.now())
    InboxMessage.objects.create(notification=notification, recipient=students[1], title="t", body="b", category="grade")
    return notification


def test_it_shows_counts_reach_acknowledgements_and_failures_on_the_watch_page(client, admin_user, watched):
    client.force_login(admin_user)

    response = client.get(f"/admin/notifications/notification/{watched.pk}/change/")

    assert response.status_code == 200
    assert dict(response.context["counts"]) == {"email": {"sent": 4}, "sms": {"failed": 1}}
    reach = response.context["reach"]
    assert reach["reached"] == 4 and reach["share"] == 1.0
    assert reach["after"] == {50: 2.0, 95: 10.0, 100: 10.0}
    html = response.content.decode()
    assert "not a valid phone number" in html  # the provider's reason
    assert "1 of 4 recipients have acknowledged; 3 still to acknowledge" in html
    assert 'id="fanout-progress"' in html and "console/watch" in html and 'data-final="1"' in html
    assert "<script>" not in html  # the refresh script is a static file


def test_it_reports_progress_as_json_while_deliveries_are_pending(client, staff_user):
    mine, _, other = two_cohorts(staff_user)
    notification = sent_notification(mine, other, statuses=("sent", "queued"))
    client.force_login(staff_user)

    running = client.get(f"/admin/notifications/notification/{notification.pk}/progress.json").json()
    assert running == {"total": 2, "done": 1, "pending": 1, "fanned_out": False, "percent": 50,
                       "status": "sending", "final": False}

    Notification.objects.filter(pk=notification.pk).update(fanned_out_at=timezone.now())
    Delivery.objects.filter(notification=notification).update(status="sent")
    done = client.get(f"/admin/notifications/notification/{notification.pk}/progress.json").json()
    assert done["percent"] == 100 and done["final"] is True


def test_it_lists_status_and_reach_with_filters_and_search(client, admin_user, watched):
    other = Notification.objects.create(notifier="academic", category="announcement", title="Library closed",
                                        body="x", audience={"everyone": True}, status="queued")
    client.force_login(admin_user)
    base = "/admin/notifications/notification/"

    listing = client.get(base)
    assert listing.status_code == 200
    html = listing.content.decode()
    assert '<progress max="4" value="4"></progress> 4/4' in html
    assert "fn-status-partially_failed" in html

    def titles(query):
        return sorted(n.title for n in client.get(base + query).context["cl"].result_list)

    assert titles("?status__exact=queued") == ["Library closed"]
    assert titles("?category__exact=grade") == ["Grades are out"]
    assert titles(f"?sender={admin_user.pk}") == ["Grades are out"]
    assert titles("?q=library") == ["Library closed"]
    assert titles("?q=s5000002") == ["Grades are out"]  # by recipient
    today = timezone.localdate()
    assert titles(f"?created_at__year={today.year}&created_at__month={today.month}&created_at__day={today.day}") \
        == ["Grades are out", "Library closed"]
    assert titles(f"?created_at__year={today.year - 1}") == []
    assert other.pk
