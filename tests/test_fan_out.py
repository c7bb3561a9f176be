"""Fan-out: the audience is cut into pages that any worker plans once; a lost page is handed out again."""

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from notifications.models import Delivery, FanoutPage, InboxMessage, Notification, Preference
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
    # Each page wrote its inbox messages as it was planned, and sent its first chunk (its 10 emails) itself.
    sent = Delivery.objects.filter(notification=notification, status="sent")
    assert sent.filter(channel="inbox").count() == 45 == InboxMessage.objects.filter(notification=notification).count()
    assert sent.filter(channel="email").count() == 45


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


def _inbox_page(admin_user, prefix, count, opted_out=(), channels=("inbox",)):
    users = students(prefix, count)
    Preference.objects.bulk_create([Preference(user=users[n], category="announcement", channel=channel, enabled=False)
                                    for n in opted_out for channel in channels])
    notification, _ = notification_send(sender=admin_user, notifier="academic", category="announcement",
                                        title="Snow day", body="Lectures move online.", channels=list(channels),
                                        audience={"users": [u.username for u in users]})
    notification_fan_out(notification.pk, spread=True)
    return notification, FanoutPage.objects.get(notification=notification)


@pytest.mark.parametrize("small, large", [(5, 40)])
def test_a_page_is_planned_and_its_inbox_chunk_written_in_as_many_queries_whatever_its_size(
        admin_user, settings, small, large):
    settings.FANOUT_CHUNK_SIZE = 100
    counts = {}
    for size in (small, large):
        notification, page = _inbox_page(admin_user, f"q{size}-", size)
        with CaptureQueriesContext(connection) as queries:
            assert fanout_page_plan(page.pk) == size
        counts[size] = len(queries)
        assert InboxMessage.objects.filter(notification=notification).count() == size
        assert set(Delivery.objects.filter(notification=notification).values_list("status", flat=True)) == {"sent"}
        notification.refresh_from_db()
        assert notification.status == Notification.Status.SENT

    assert counts[small] == counts[large]


def test_the_page_task_writes_the_inbox_only_of_those_who_take_it_and_records_why_the_others_get_nothing(
        admin_user, settings):
    settings.FANOUT_CHUNK_SIZE = 100
    notification, page = _inbox_page(admin_user, "half-", 20, opted_out=range(0, 20, 2))

    assert fanout_page_plan(page.pk) == 10

    deliveries = Delivery.objects.filter(notification=notification).select_related("recipient")
    skipped = deliveries.filter(status=Delivery.Status.SKIPPED)
    assert skipped.count() == 10 and {d.reason for d in skipped} == {Delivery.Reason.OPTED_OUT}
    assert {d.recipient.username for d in deliveries.filter(status=Delivery.Status.SENT)} == {
        f"half-{n:05d}" for n in range(1, 20, 2)}
    assert set(InboxMessage.objects.filter(notification=notification).values_list("recipient__username", flat=True)) \
        == {f"half-{n:05d}" for n in range(1, 20, 2)}
    assert not deliveries.filter(status=Delivery.Status.SENDING).exists() and not deliveries.exclude(claim_token="")


def test_the_rest_of_a_page_beyond_its_first_chunk_goes_to_the_queue(admin_user, settings, broker, db):
    settings.FANOUT_CHUNK_SIZE = 4
    # (Email: a page's inbox is written whole as the page is planned, whatever the chunk size.)
    notification, _ = _inbox_page(admin_user, "rest-", 4, channels=["email"])
    page = FanoutPage.objects.get(notification=notification)
    FanoutPage.objects.filter(pk=page.pk).update(size=4)
    settings.FANOUT_CHUNK_SIZE = 3  # the page holds more than a chunk

    assert fanout_page_plan(page.pk) == 4

    statuses = sorted(Delivery.objects.filter(notification=notification).values_list("status", flat=True))
    assert statuses == ["queued", "sent", "sent", "sent"]
    assert Delivery.objects.get(notification=notification, status="queued").enqueued_at is not None
