"""Admin actions: retry failed, cancel, resend to those who have not acknowledged; each told and recorded."""

import pytest
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.messages import get_messages
from django.utils import timezone

from notifications.models import Delivery, InboxMessage, Notification

from .console_helpers import sent_notification, two_cohorts

LIST = "/admin/notifications/notification/"


def act(client, action, notification):
    response = client.post(LIST, {"action": action, "_selected_action": [notification.pk], "index": 0}, follow=True)
    return [str(m) for m in get_messages(response.wsgi_request)] or [str(m) for m in response.context["messages"]]


def history(notification):
    return list(LogEntry.objects.filter(object_id=str(notification.pk), action_flag=CHANGE)
                .values_list("change_message", flat=True))


@pytest.mark.django_db
def test_it_retries_failed_deliveries(client, staff_user, django_capture_on_commit_callbacks):
    mine, _, other = two_cohorts(staff_user)
    notification = sent_notification(mine, other, statuses=("failed", "sent"))
    client.force_login(staff_user)

    with django_capture_on_commit_callbacks() as callbacks:
        said = act(client, "retry_failed", notification)

    assert any("Queued 1 failed deliveries again" in m for m in said)
    assert sorted(notification.deliveries.values_list("status", flat=True)) == ["queued", "sent"]
    assert len(callbacks) == 1
    assert history(notification) == ["Retried 1 failed deliveries."]


@pytest.mark.django_db
def test_it_cancels_a_running_notification_and_refuses_a_finished_one(client, staff_user):
    mine, _, other = two_cohorts(staff_user)
    running = sent_notification(mine, other, statuses=("queued", "sent"))
    finished = sent_notification(mine, other, title="Done")
    Notification.objects.filter(pk=finished.pk).update(status="sent")
    client.force_login(staff_user)

    said = act(client, "cancel", running)
    refused = act(client, "cancel", finished)

    running.refresh_from_db()
    assert running.status == "cancelled"
    assert sorted(running.deliveries.values_list("status", flat=True)) == ["cancelled", "sent"]
    assert any("1 pending deliveries cancelled" in m for m in said)
    assert history(running) == ["Cancelled; 1 pending deliveries cancelled."]
    assert any("cannot be cancelled" in m for m in refused)
    assert history(finished) == []


@pytest.mark.django_db
def test_it_resends_to_those_who_have_not_acknowledged(client, staff_user, django_capture_on_commit_callbacks):
    mine, _, other = two_cohorts(staff_user)
    notification = sent_notification(mine, other, requires_ack=True, channel="inbox")
    first, second = mine.members.order_by("pk")
    InboxMessage.objects.create(notification=notification, recipient=first, title="t", body="b",
                                category="announcement", acknowledged_at=timezone.now())
    InboxMessage.objects.create(notification=notification, recipient=second, title="t", body="b",
                                category="announcement")
    client.force_login(staff_user)

    with django_capture_on_commit_callbacks():
        said = act(client, "resend_unacknowledged", notification)

    resent = Notification.objects.get(parent=notification)
    assert resent.audience == {"users": [second.username]}
    assert resent.requires_ack and resent.sender == staff_user
    assert any(f"resent to 1 recipient(s) who had not acknowledged, as notification {resent.pk}" in m for m in said)
    assert history(notification) == [f"Resent to 1 recipients who had not acknowledged (notification {resent.pk})."]


@pytest.mark.django_db
def test_it_says_when_a_notification_asks_for_no_acknowledgement(client, staff_user):
    mine, _, other = two_cohorts(staff_user)
    notification = sent_notification(mine, other)
    client.force_login(staff_user)

    said = act(client, "resend_unacknowledged", notification)

    assert any("does not ask for acknowledgement" in m for m in said)
    assert Notification.objects.count() == 1 and Delivery.objects.count() == 2
