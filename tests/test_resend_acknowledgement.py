"""Resend to the unacknowledged, and one acknowledgement for a notification's whole family
(the original, its resends, its escalation rungs)."""

import datetime as dt

import pytest
from django.contrib.messages import get_messages

from channels_app.models import PushSubscription
from notifications.engine import deliveries_send, notification_fan_out
from notifications.engine.escalation import escalations_run
from notifications.links import link_token
from notifications.models import Delivery, InboxMessage, Notification
from notifications.selectors import acknowledgement_counts, notification_acknowledgements
from notifications.services import notification_send

from .api_support import API, jwt_client
from .conftest import make_user
from .console_helpers import sent_notification, two_cohorts
from .test_escalation import twilio  # noqa: F401  (fixture)

LIST = "/admin/notifications/notification/"
UTC = dt.timezone.utc
T0 = dt.datetime(2026, 1, 15, 14, 0, tzinfo=UTC)


def resend(client, notification):
    response = client.post(LIST, {"action": "resend_unacknowledged", "_selected_action": [notification.pk],
                                  "index": 0}, follow=True)
    return [str(m) for m in get_messages(response.wsgi_request)] or [str(m) for m in response.context["messages"]]


@pytest.fixture
def people(db):
    def person(username):
        user = make_user(username, phone="+3361234567" + str(len(username) % 10), phone_verified_at=T0,
                         quiet_hours_start=dt.time(0), quiet_hours_end=dt.time(23, 59))
        PushSubscription.objects.create(user=user, endpoint=f"https://push.example/{username}", p256dh="k", auth="a")
        return user

    return [person("ada"), person("bob")]


def deliver(notification, now):
    notification_fan_out(notification.pk, now=now)
    deliveries_send(list(Delivery.objects.filter(notification=notification, status="queued")
                         .values_list("pk", flat=True)), now=now)
    notification.refresh_from_db()
    return notification


def alert(people, now=T0):
    """A security alert on push and inbox (push is not configured here: it fails, the inbox is written)."""
    notification, _ = notification_send(
        sender=None, notifier="security", title="Gas leak", body="Leave building C now.", channels=["push", "inbox"],
        data={"severity": "critical", "location": "Building C"}, audience={"users": [u.username for u in people]})
    return deliver(notification, now)


@pytest.mark.django_db
def test_it_counts_people_not_deliveries_when_resending(client, staff_user, django_capture_on_commit_callbacks):
    mine, _, other = two_cohorts(staff_user)
    notification = sent_notification(mine, other, requires_ack=True, channel="inbox")
    for member in mine.members.all():  # more channels and escalation rungs: more deliveries, the same people
        Delivery.objects.create(notification=notification, recipient=member, channel="email", status="sent")
        Delivery.objects.create(notification=notification, recipient=member, channel="email", status="sent",
                                escalation_level=1)
    client.force_login(staff_user)

    with django_capture_on_commit_callbacks():
        said = resend(client, notification)

    resent = Notification.objects.get(parent=notification)
    assert sorted(resent.audience["users"]) == sorted(mine.members.values_list("username", flat=True))
    assert any("resent to 2 recipient(s)" in m for m in said)
    assert acknowledgement_counts(notification) == {"recipients": 2, "acknowledged": 0, "waiting": 2}


def test_it_keeps_one_inbox_alert_per_student_and_the_resends_link_acknowledges_the_original(
        client, people, admin_user, django_capture_on_commit_callbacks):
    original = alert(people)
    ada, bob = people
    jwt_client(ada).post(f"{API}me/inbox/{InboxMessage.objects.get(recipient=ada).pk}/read/")
    client.force_login(admin_user)
    with django_capture_on_commit_callbacks():
        resend(client, original)
    resent = deliver(Notification.objects.get(parent=original), T0 + dt.timedelta(minutes=2))

    # The resend's inbox delivery went out, yet each student still has one identical alert to acknowledge,
    # the original's, unread again.
    assert Delivery.objects.filter(notification=resent, channel="inbox", status="sent").count() == 2
    inbox = InboxMessage.objects.filter(recipient=ada)
    assert [(m.notification_id, m.read_at, m.acknowledged_at) for m in inbox] == [(original.pk, None, None)]

    # The link in the resend's email, and its inbox link, open the original's message.
    assert client.get(f"/inbox/{resent.pk}/").status_code == 404  # the admin has no such message
    client.force_login(ada)
    assert "Leave building C now." in client.get(f"/inbox/{resent.pk}/").content.decode()
    token = link_token("acknowledge", user_id=ada.pk, notification_id=resent.pk)
    assert client.post(f"/ack/{token}/").status_code == 200

    assert InboxMessage.objects.get(recipient=ada).acknowledged_at is not None
    assert acknowledgement_counts(original) == {"recipients": 2, "acknowledged": 1, "waiting": 1}
    assert acknowledgement_counts(resent) == {"recipients": 2, "acknowledged": 1, "waiting": 1}
    assert [(u.username, u.acknowledged_at is not None) for u in notification_acknowledgements(original)] == [
        ("ada", True), ("bob", False)]


def test_it_stops_the_originals_escalation_when_the_resend_is_acknowledged_through_the_api(people, twilio):
    original = alert(people)
    ada, bob = people
    resent, _ = notification_send(
        sender=None, notifier="security", title="Gas leak (again)", body="Leave building C now.",
        channels=["inbox"], data=original.data, audience={"users": [ada.username, bob.username]},
        requires_ack=True, parent=original)
    resent = deliver(resent, T0 + dt.timedelta(minutes=1))
    assert InboxMessage.objects.filter(recipient=ada).count() == 2  # not identical: both are written
    message = InboxMessage.objects.get(recipient=ada, notification=resent)

    acked = jwt_client(ada).post(f"{API}me/inbox/{message.pk}/ack/")

    assert acked.status_code == 200 and acked.json()["acknowledged_at"]
    assert all(m.acknowledged_at for m in InboxMessage.objects.filter(recipient=ada))
    assert acknowledgement_counts(original)["acknowledged"] == 1
    escalations_run(now=T0 + dt.timedelta(minutes=15))
    assert not Delivery.objects.filter(notification__in=[original, resent], recipient=ada,
                                       escalation_level__gt=0).exists()
    assert Delivery.objects.filter(notification=original, recipient=bob, escalation_level=1, channel="sms").exists()
    # Only the original climbs the ladder: bob, who acknowledged neither, is not escalated twice.
    assert not Delivery.objects.filter(notification=resent, escalation_level__gt=0).exists()
