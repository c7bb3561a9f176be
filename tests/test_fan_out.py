"""Fan-out: the audience is cut into pages that any worker plans once; a lost page is handed out again."""

from datetime import timedelta

import pytest
from django.utils import timezone

from notifications.models import Delivery, FanoutPage, Notification
from notifications.engine import deliveries_sweep, fanout_page_plan, notification_fan_out
from notifications.services import notification_send

from .delivery_helpers import students

pytestmark = pytest.mark.django_db


@pytest.fixture
def inbox_notification(admin_user, settings):
    settings.FANOUT_CHUNK_SIZE = 10
    users = students("s9000", 45)

    def make():
        notification, _ = notification_send(sender=admin_user, notifier="academic", category="announcement",
                                            title="Fire drill", body="At noon.", channels=["inbox", "email"],
                                            audience={"users": [u.username for u in users]})
        return notification

    return make


def test_it_cuts_the_audience_into_pages_that_are_each_planned_once(inbox_notification, smtp_peer):
    notification = inbox_notification()
    now = timezone.now()

    notification_fan_out(notification.pk, now=now, spread=True)

    pages = list(FanoutPage.objects.filter(notification=notification).order_by("after_pk"))
    assert [p.size for p in pages] == [10, 10, 10, 10, 5]
    assert [p.is_last for p in pages] == [False] * 4 + [True]
    assert all(a.last_pk == b.after_pk for a, b in zip(pages, pages[1:]))
    assert not Delivery.objects.exists()  # planning is the pages' work, on any worker

    planned = [fanout_page_plan(page.pk, now=now) for page in reversed(pages)]

    assert planned == [10, 20, 20, 20, 20]
    assert Delivery.objects.filter(notification=notification).count() == 90
    assert [fanout_page_plan(page.pk, now=now) for page in pages] == [0] * 5  # once only
    assert Delivery.objects.filter(notification=notification).count() == 90
    notification.refresh_from_db()
    assert notification.fanned_out_at is not None and notification.recipient_count == 45
    # Each page sent its first chunk itself; the rest went to the queue.
    assert Delivery.objects.filter(notification=notification, status="sent").count() == 50


def test_it_hands_out_again_the_pages_whose_task_was_lost(inbox_notification, settings):
    settings.DELIVERY_STALE_SECONDS = 300
    notification = inbox_notification()
    now = timezone.now()
    notification_fan_out(notification.pk, now=now, spread=True)  # its page tasks are never run: lost
    first = FanoutPage.objects.filter(notification=notification).order_by("after_pk").first()
    fanout_page_plan(first.pk, now=now, send_first_chunk=False)

    assert "pages_enqueued" not in deliveries_sweep(now=now + timedelta(seconds=299))
    swept = deliveries_sweep(now=now + timedelta(seconds=301))

    assert swept["pages_enqueued"] == 4
    assert FanoutPage.objects.filter(planned_at__isnull=True, enqueued_at=now + timedelta(seconds=301)).count() == 4


def test_it_plans_nothing_for_a_cancelled_notification(inbox_notification):
    from notifications.services import notification_cancel

    notification = inbox_notification()
    notification_fan_out(notification.pk, spread=True)
    notification_cancel(notification)

    assert [fanout_page_plan(p.pk) for p in FanoutPage.objects.all()] == [0] * 5
    assert not Delivery.objects.exists()
    assert deliveries_sweep(now=timezone.now() + timedelta(days=1)).get("pages_enqueued") is None
    assert Notification.objects.get(pk=notification.pk).status == "cancelled"


def test_it_finishes_at_once_for_an_audience_that_reaches_nobody(admin_user):
    (student,) = students("s9100", 1)
    student.is_active = False
    student.save()
    notification, _ = notification_send(sender=admin_user, notifier="academic", category="announcement",
                                        title="Fire drill", body="At noon.", audience={"users": [student.username]})

    notification_fan_out(notification.pk, spread=True)

    notification.refresh_from_db()
    assert notification.fanned_out_at is not None and notification.status == "sent"
    assert not FanoutPage.objects.exists()
