"""Escalation per notification: its own delay and ladder (API, console), else its kind's; academic alerts
escalate too."""

import datetime as dt

import pytest
from django.contrib.auth.models import Group

from accounts.models import Cohort, Role
from channels_app.models import PushSubscription
from notifications.engine import deliveries_send, notification_fan_out
from notifications.engine.escalation import escalations_run
from notifications.models import Delivery, InboxMessage, Notification
from notifications.services import notification_send
from notifications.services.inbox import message_acknowledge

from .api_support import API, jwt_client
from .conftest import make_user

UTC = dt.timezone.utc
T0 = dt.datetime(2026, 1, 15, 14, 0, tzinfo=UTC)


@pytest.fixture
def people(db):
    def person(username):
        user = make_user(username, phone="+3361234567" + username[-1], phone_verified_at=T0,
                         quiet_hours_start=dt.time(0), quiet_hours_end=dt.time(0))
        PushSubscription.objects.create(user=user, endpoint=f"https://push.example/{username}", p256dh="k", auth="a")
        return user

    return [person("s1000001"), person("s1000002")]


def sent(people, now, **fields):
    notification, _ = notification_send(sender=None, audience={"users": [u.username for u in people]}, **fields)
    notification = notification_fan_out(notification.pk, now=now)
    deliveries_send(list(Delivery.objects.filter(notification=notification).values_list("pk", flat=True)), now=now)
    return notification


def rungs(notification):
    return sorted(Delivery.objects.filter(notification=notification, escalation_level__gt=0)
                  .values_list("recipient__username", "escalation_level", "channel"))


def test_an_alert_escalates_after_its_own_delay_along_its_own_ladder(people):
    alert = sent(people, T0, notifier="security", title="Gas leak", body="Leave.", channels=["inbox", "email"],
                 data={"severity": "high"}, escalation_delay_minutes=3, escalation_ladder=["inbox", "email"])
    message_acknowledge(InboxMessage.objects.get(notification=alert, recipient=people[1]))

    assert escalations_run(now=T0 + dt.timedelta(minutes=2)) == {}
    assert escalations_run(now=T0 + dt.timedelta(minutes=3)) == {"escalated": 1}

    assert rungs(alert) == [("s1000001", 1, "email")]  # not SecurityNotifier's push → SMS → email, nor 10 minutes


def test_an_alert_without_its_own_escalation_keeps_its_kinds(people):
    alert = sent(people, T0, notifier="security", title="Gas leak", body="Leave.", channels=["push", "sms", "inbox"],
                 data={"severity": "high"})

    assert escalations_run(now=T0 + dt.timedelta(minutes=9)) == {}
    escalations_run(now=T0 + dt.timedelta(minutes=10))

    assert {channel for _user, _level, channel in rungs(alert)} == {"sms"}


def test_an_academic_notification_asking_for_acknowledgement_escalates_along_its_kinds_ladder(people):
    notice = sent(people, T0, notifier="academic", category="timetable", title="Exam room", body="Room B12.",
                  channels=["email", "push", "inbox"], requires_ack=True)
    unasked = sent(people, T0, notifier="academic", category="timetable", title="FYI", body="Room B12.",
                   channels=["email", "push", "inbox"])
    message_acknowledge(InboxMessage.objects.get(notification=notice, recipient=people[1]))

    assert escalations_run(now=T0 + dt.timedelta(hours=3, minutes=59)) == {}
    assert escalations_run(now=T0 + dt.timedelta(hours=4)) == {"escalated": 1}

    # email, then push (SMS only with the student's consent: off by default for academic categories)
    assert rungs(notice) == [("s1000001", 1, "push")]
    assert rungs(unasked) == []


def test_the_api_takes_and_returns_the_escalation_and_refuses_it_out_of_limits_by_field(people, settings):
    admin = make_user("a3000001", role=Role.ADMIN, is_staff=True, is_superuser=True)
    client = jwt_client(admin)
    body = {"notifier": "academic", "category": "timetable", "title": "Exam room", "body": "B12",
            "channels": ["email", "push"], "requires_ack": True, "audience": {"users": ["s1000001"]}}

    too_long = client.post(f"{API}notifications/", {**body, "escalation_delay_minutes": 24 * 60 + 1,
                                                     "escalation_ladder": ["email", "sms"]}, format="json")
    assert too_long.status_code == 400
    errors = too_long.json()["errors"]
    assert errors["escalation_delay_minutes"] == ["The escalation delay is from 1 to 1440 minutes."]
    assert "may only use the channels it is sent on (email, push), not sms" in errors["escalation_ladder"][0]
    assert client.post(f"{API}notifications/", {**body, "escalation_ladder": ["fax"]},
                       format="json").status_code == 400

    created = client.post(f"{API}notifications/", {**body, "escalation_delay_minutes": 30,
                                                   "escalation_ladder": ["email", "push"]}, format="json")
    assert created.status_code == 201, created.json()
    shown = client.get(f"{API}notifications/{created.json()['id']}/").json()
    assert (shown["escalation_delay_minutes"], shown["escalation_ladder"]) == (30, ["email", "push"])
    assert not Notification.objects.filter(escalation_delay_minutes__gt=60).exists()


def test_the_console_compose_takes_the_escalation_and_the_watch_page_shows_it(client, people):
    staff = make_user("t2000001", role=Role.STAFF, is_staff=True)
    staff.groups.add(Group.objects.get(name=Role.EMERGENCY))
    cohort = Cohort.objects.create(code="cs101", name="CS 101")
    cohort.members.add(*people)
    cohort.managers.add(staff)
    client.force_login(staff)
    form = {"notifier": "academic", "category": "timetable", "priority": "normal", "title": "Exam room",
            "body": "B12", "channels": ["email", "push"], "requires_ack": "on", "cohorts": [cohort.pk], "token": "t",
            "escalation_delay_minutes": "0", "escalation_ladder": "email, fax"}

    refused = client.post("/admin/notifications/notification/add/", {**form, "stage": "confirm"})
    errors = refused.context["form"].errors
    assert errors["escalation_delay_minutes"] == ["The escalation delay is from 1 to 1440 minutes."]
    assert "not fax" in errors["escalation_ladder"][0]

    client.post("/admin/notifications/notification/add/",
                {**form, "escalation_delay_minutes": "45", "escalation_ladder": "push, email", "stage": "confirm"})

    notice = Notification.objects.get()
    assert (notice.escalation_delay_minutes, notice.escalation_ladder) == (45, ["push", "email"])
    page = client.get(f"/admin/notifications/notification/{notice.pk}/change/").content.decode()
    assert "Escalation: Web push → Email, every 45 minutes to whoever has not acknowledged." in page
    assert "(set for this notification)" in page
