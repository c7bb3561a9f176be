"""A page task writes the inbox of its plain recipients as sets: the same rows, reasons and messages as one by one."""

import datetime as dt

import pytest
from django.core import mail
from django.utils import timezone

from channels_app.models import PerformanceMetric
from notifications.engine import fanout_page_plan, notification_fan_out
from notifications.engine.inbox import inbox_unread_count
from notifications.models import CategoryDefault, Delivery, FanoutPage, InboxMessage, Notification, Preference
from notifications.services import notification_send

from .conftest import make_user
from .delivery_helpers import students

pytestmark = pytest.mark.django_db
Reason = Delivery.Reason


def plan_pages(sender, users, **fields):
    """Send to `users` and plan every page as the workers' page tasks do; returns the notification."""
    fields = {"notifier": "academic", "category": "announcement", "title": "Snow day",
              "body": "Lectures move online.", "channels": ["inbox"], **fields}
    notification, _ = notification_send(sender=sender, audience={"users": [u.username for u in users]}, **fields)
    notification_fan_out(notification.pk, spread=True)
    for page in FanoutPage.objects.filter(notification=notification).order_by("after_pk"):
        fanout_page_plan(page.pk)
    notification.refresh_from_db()
    return notification


def rows(notification):
    return {d.recipient.username: (d.channel, d.status, d.reason)
            for d in Delivery.objects.filter(notification=notification).select_related("recipient")}


def inbox(notification):
    return dict(InboxMessage.objects.filter(notification=notification).values_list("recipient__username", "title"))


def test_it_writes_each_recipients_inbox_with_the_planners_reasons_and_holds_quiet_hours(admin_user):
    now = timezone.now()
    plain = students("plain-", 4)
    opted_out = make_user("optout")
    Preference.objects.create(user=opted_out, category="announcement", channel="inbox", enabled=False)
    sleeping = make_user("sleeping", timezone="UTC", quiet_hours_start=(now - dt.timedelta(hours=1)).time(),
                         quiet_hours_end=(now + dt.timedelta(hours=1)).time())
    french = make_user("francais", language="fr", timezone="Europe/Paris")

    notification = plan_pages(admin_user, [*plain, opted_out, sleeping, french],
                              translations={"fr": {"title": "Jour de neige", "body": "Cours en ligne."}})

    found = rows(notification)
    assert found["optout"] == ("inbox", "skipped", Reason.OPTED_OUT)
    assert found["sleeping"] == ("inbox", "queued", Reason.QUIET_HOURS)
    assert {found[u.username] for u in [*plain, french]} == {("inbox", "sent", "")}
    assert inbox(notification) == {**{u.username: "Snow day" for u in plain}, "francais": "Jour de neige"}
    sent = Delivery.objects.filter(notification=notification, status="sent")
    assert {(d.attempts, d.send_count, d.sent_at is not None, d.claim_token) for d in sent} == {(1, 1, True, "")}
    assert notification.status == Notification.Status.SENDING  # the held one is still to come
    assert Delivery.objects.get(recipient=sleeping, notification=notification).enqueued_at is None  # its time

    page = FanoutPage.objects.get(notification=notification)
    assert fanout_page_plan(page.pk) == 0  # planned once: nothing written twice
    assert Delivery.objects.filter(notification=notification).count() == 7
    assert InboxMessage.objects.filter(notification=notification).count() == 5


def test_it_keeps_category_defaults_and_what_overrides_them(admin_user, settings):
    settings.EMERGENCY_TWO_PERSON_RULE = False  # the alert goes at once: its planning is under test here
    users = students("def-", 3)
    Preference.objects.create(user=users[0], category="announcement", channel="inbox", enabled=True)
    Preference.objects.create(user=users[1], category="security", channel="inbox", enabled=False)
    Preference.objects.create(user=users[2], category="announcement", channel="inbox", enabled=False)
    CategoryDefault.objects.create(category="announcement", channel="inbox", enabled=False)

    announcement = plan_pages(admin_user, users)
    alert = plan_pages(admin_user, users, notifier="security", category="security", title="Lockdown",
                       data={"severity": "high"})
    to_acknowledge = plan_pages(admin_user, users, title="Sign the form", requires_ack=True)

    assert rows(announcement) == {"def-00000": ("inbox", "sent", ""),
                                  "def-00001": ("inbox", "skipped", Reason.DEFAULT_OFF),
                                  "def-00002": ("inbox", "skipped", Reason.OPTED_OUT)}
    assert set(rows(alert).values()) == {("inbox", "sent", "")}  # mandatory: despite the opt-out
    assert set(inbox(alert).values()) == {"Security alert (high): Lockdown"}
    assert set(rows(to_acknowledge).values()) == {("inbox", "sent", "")}  # the inbox holds the acknowledgement
    assert all(n.status == Notification.Status.SENT for n in (announcement, alert, to_acknowledge))


def test_a_template_that_prints_a_recipients_name_is_rendered_for_each_of_them(admin_user, settings, tmp_path):
    directory = tmp_path / "notifications" / "default"
    directory.mkdir(parents=True)
    (directory / "inbox_title.en.txt").write_text("{% autoescape off %}{{ recipient.name }}: {{ title }}"
                                                  "{% endautoescape %}")
    settings.TEMPLATES = [{**settings.TEMPLATES[0], "DIRS": [tmp_path, *settings.TEMPLATES[0]["DIRS"]]}]
    users = students("named-", 3)

    notification = plan_pages(admin_user, users)

    assert inbox(notification) == {u.username: f"{u.get_full_name()}: Snow day" for u in users}
    assert set(rows(notification).values()) == {("inbox", "sent", "")}


def test_the_inbox_goes_as_a_set_beside_the_other_channels_of_the_page(admin_user, settings):
    settings.FANOUT_CHUNK_SIZE = 100
    users = students("both-", 5)
    Preference.objects.create(user=users[0], category="announcement", channel="email", enabled=False)

    notification = plan_pages(admin_user, users, channels=["email", "inbox"])

    statuses = sorted((d.recipient.username, d.channel, d.status, d.reason)
                      for d in Delivery.objects.filter(notification=notification).select_related("recipient"))
    assert statuses == sorted([("both-00000", "email", "skipped", Reason.OPTED_OUT)]
                              + [(u.username, "email", "sent", "") for u in users[1:]]
                              + [(u.username, "inbox", "sent", "") for u in users])
    assert len(mail.outbox) == 4 and len(inbox(notification)) == 5
    assert notification.status == Notification.Status.SENT
    # The console's channel health counts them as the inbox's sends.
    assert list(PerformanceMetric.objects.filter(channel="inbox").values_list("items", "failed")) == [(5, 0)]


def test_the_unread_counts_of_its_recipients_are_counted_again(admin_user, settings,
                                                               django_capture_on_commit_callbacks):
    settings.INBOX_UNREAD_CACHE = True
    users = students("unread-", 2)
    assert inbox_unread_count(users[0].pk) == 0  # counted, and kept in the cache

    with django_capture_on_commit_callbacks(execute=True):
        plan_pages(admin_user, users)

    assert inbox_unread_count(users[0].pk) == 1


def test_a_cancel_that_lands_while_a_page_is_being_planned_stops_that_page_too(admin_user, monkeypatch):
    from notifications.engine import fanout
    from notifications.services import notification_cancel

    users = students("late-", 3)
    notification, _ = notification_send(sender=admin_user, notifier="academic", category="announcement",
                                        title="Snow day", body="Lectures move online.", channels=["inbox", "email"],
                                        audience={"users": [u.username for u in users]})
    notification_fan_out(notification.pk, spread=True)
    real = fanout.page_users

    def cancelled_meanwhile(page):  # the cancel commits after the page task's first look at the status
        notification_cancel(Notification.objects.get(pk=page.notification_id), by=admin_user)
        return real(page)

    monkeypatch.setattr(fanout, "page_users", cancelled_meanwhile)
    [page] = FanoutPage.objects.filter(notification=notification)

    assert fanout_page_plan(page.pk) == 0

    page.refresh_from_db()
    assert page.planned_at is None  # nothing of the page was kept
    assert not InboxMessage.objects.filter(notification=notification).exists()
    assert not Delivery.objects.filter(notification=notification).exists() and mail.outbox == []
    notification.refresh_from_db()
    assert notification.status == Notification.Status.CANCELLED


@pytest.mark.django_db(transaction=True)
def test_on_postgresql_a_cancel_waits_for_the_page_being_written_then_cancels_what_it_queued(monkeypatch):
    import threading

    from django.db import connection, connections

    from notifications.services import notification_cancel

    if connection.vendor != "postgresql":
        pytest.skip("row locks: PostgreSQL (on SQLite the page's write lock keeps the cancel out)")
    admin = make_user("admin-lock", is_staff=True, is_superuser=True)
    users = students("lock-", 3)
    notification, _ = notification_send(sender=admin, notifier="academic", category="announcement",
                                        title="Snow day", body="Lectures move online.", channels=["inbox", "email"],
                                        audience={"users": [u.username for u in users]})
    notification_fan_out(notification.pk, spread=True)
    [page] = FanoutPage.objects.filter(notification=notification)
    writing, release, cancelled = threading.Event(), threading.Event(), threading.Event()
    from notifications.engine import inbox_sets

    original_write = inbox_sets.InboxSet.write

    def slow_write(self, now):
        written = original_write(self, now)
        writing.set()
        release.wait(10)
        return written

    monkeypatch.setattr(inbox_sets.InboxSet, "write", slow_write)

    def plan():
        try:
            fanout_page_plan(page.pk, send_first_chunk=True)
        finally:
            connections.close_all()

    def cancel():
        try:
            notification_cancel(Notification.objects.get(pk=notification.pk), by=admin)
            cancelled.set()
        finally:
            connections.close_all()

    planner = threading.Thread(target=plan)
    planner.start()
    assert writing.wait(10)
    canceller = threading.Thread(target=cancel)
    canceller.start()
    assert not cancelled.wait(1)  # the cancel waits for the page's transaction
    release.set()
    planner.join(20)
    canceller.join(20)
    assert cancelled.is_set()
    notification.refresh_from_db()
    assert notification.status == Notification.Status.CANCELLED
    assert InboxMessage.objects.filter(notification=notification).count() == 3  # written before the cancel
    assert not Delivery.objects.filter(notification=notification, channel="email", status="queued").exists()
