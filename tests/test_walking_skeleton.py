"""One notification from the service to real mailboxes and inboxes, through a real qcluster worker."""

import pytest

from notifications.models import Delivery, InboxMessage, Notification
from notifications.services import notification_send

from .conftest import BROKERS, make_user
from .peers import wait_until


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("broker", BROKERS, indirect=True)
def test_it_delivers_to_three_mailboxes_and_inboxes_through_a_real_worker(broker, smtp_peer, workers, admin_user):
    students = [make_user(f"s100000{n}", first_name=f"Student{n}") for n in range(3)]
    workers()

    notification, created = notification_send(
        sender=admin_user, notifier="academic", category="timetable", title="Room change for CS101",
        body="Tomorrow's lecture moves to room B12.", channels=["email", "inbox"],
        audience={"users": [s.username for s in students]},
    )

    assert created
    wait_until(lambda: Delivery.objects.filter(notification=notification, status="sent").count() == 6,
               timeout=60, message="six sent deliveries")
    assert sorted(m["To"] for m in smtp_peer.messages) == sorted(s.email for s in students)
    for message in smtp_peer.messages:
        assert message["Subject"] == "Room change for CS101"
        assert message["Message-ID"].startswith("<delivery-")
        assert "List-Unsubscribe" in message
        text = message.get_body(("plain",)).get_content()
        assert "Tomorrow's lecture moves to room B12." in text
        assert message.get_body(("html",)) is not None
    inbox = InboxMessage.objects.filter(notification=notification)
    assert sorted(inbox.values_list("recipient__username", flat=True)) == sorted(s.username for s in students)
    assert set(Delivery.objects.filter(notification=notification).values_list("status", flat=True)) == {"sent"}
    wait_until(lambda: Notification.objects.get(pk=notification.pk).status == Notification.Status.SENT,
               message="notification marked sent")
