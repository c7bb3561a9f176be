"""When: scheduled sends (state in the database, started by the sweep), cancelling them, deadline reminders."""

import datetime as dt

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone
from django_q.models import OrmQ

from notifications.models import Delivery, Notification
from notifications.engine import deliveries_sweep, notification_fan_out
from notifications.services import notification_cancel, notification_preview, notification_send



def queued_fan_outs():
    """Ids of scheduled notifications whose fan-out task waits in the (ORM) queue."""
    ids = [task.task["args"][0] for task in OrmQ.objects.all()
           if task.task.get("func") == "notifications.tasks.fan_out"]
    scheduled = set(Notification.objects.filter(pk__in=ids, scheduled_for__isnull=False).values_list("pk", flat=True))
    return sorted(pk for pk in ids if pk in scheduled)


def send(student, **fields):
    notification, _ = notification_send(sender=None, notifier="academic", title="Essay", body="Submit it.",
                                        channels=["email", "inbox"], audience={"users": [student.username]}, **fields)
    return notification


def test_it_sends_a_scheduled_notification_when_the_sweep_finds_it_due(broker, student):
    at = timezone.now() + dt.timedelta(hours=3)
    notification = send(student, scheduled_for=at)
    assert notification.status == Notification.Status.SCHEDULED

    # Nothing lives in a process: a restarted sweep finds the schedule in the database.
    assert "scheduled_started" not in deliveries_sweep(now=at - dt.timedelta(minutes=1))
    assert queued_fan_outs() == []
    done = deliveries_sweep(now=at + dt.timedelta(seconds=30))

    assert done["scheduled_started"] == 1
    assert Notification.objects.get(pk=notification.pk).status == Notification.Status.QUEUED
    assert queued_fan_outs() == [notification.pk]
    notification_fan_out(notification.pk, now=at + dt.timedelta(seconds=40))
    assert Delivery.objects.filter(notification=notification).count() == 2
    assert "scheduled_started" not in deliveries_sweep(now=at + dt.timedelta(minutes=2))


def test_it_cancels_a_scheduled_notification_before_it_starts(broker, student):
    at = timezone.now() + dt.timedelta(hours=3)
    notification = send(student, scheduled_for=at)

    notification_cancel(notification)
    done = deliveries_sweep(now=at + dt.timedelta(minutes=1))

    assert notification.status == Notification.Status.CANCELLED
    assert "scheduled_started" not in done
    assert queued_fan_outs() == []
    assert not Delivery.objects.filter(notification=notification).exists()


def test_it_cannot_cancel_a_notification_that_has_finished(student):
    notification = send(student)
    Notification.objects.filter(pk=notification.pk).update(status=Notification.Status.SENT)
    notification.refresh_from_db()

    with pytest.raises(ValidationError, match="cannot be cancelled"):
        notification_cancel(notification)


def test_it_schedules_deadline_reminders_at_their_offsets(broker, student):
    deadline = timezone.now() + dt.timedelta(days=3)
    parent = send(student, category="deadline", deadline=deadline, reminder_offsets=[120, 7 * 24 * 60, 1440])

    reminders = list(parent.reminders.order_by("scheduled_for"))
    # 7 days before is already past: only 1 day and 2 hours before remain.
    assert [r.scheduled_for for r in reminders] == [deadline - dt.timedelta(days=1), deadline - dt.timedelta(hours=2)]
    assert {r.status for r in reminders} == {Notification.Status.SCHEDULED}
    assert [r.data["reminder_minutes"] for r in reminders] == [1440, 120]
    assert all(r.category == "deadline" and r.deadline == deadline for r in reminders)

    done = deliveries_sweep(now=deadline - dt.timedelta(hours=23))
    assert done["scheduled_started"] == 1
    assert queued_fan_outs() == [reminders[0].pk]
    subject = notification_preview(Notification.objects.get(pk=reminders[0].pk), student)["email"]["subject"]
    assert subject.startswith("Reminder: Essay — due ")

    OrmQ.objects.all().delete()  # a worker took the task and fanned the first reminder out
    notification_fan_out(reminders[0].pk, now=deadline - dt.timedelta(hours=23))
    assert Delivery.objects.filter(notification=reminders[0]).count() == 2

    deliveries_sweep(now=deadline - dt.timedelta(hours=1))
    assert queued_fan_outs() == [reminders[1].pk]


def test_it_cancels_pending_reminders_with_their_notification(student):
    parent = send(student, category="deadline", deadline=timezone.now() + dt.timedelta(days=3),
                  reminder_offsets=[1440], scheduled_for=timezone.now() + dt.timedelta(hours=1))

    notification_cancel(parent)

    assert set(parent.reminders.values_list("status", flat=True)) == {Notification.Status.CANCELLED}


@pytest.mark.parametrize("offsets, deadline, error", [
    ([60], None, "Reminders need a deadline."),
    ([-60], True, "positive numbers"),
    (["soon"], True, "whole minutes"),
])
def test_it_refuses_bad_reminder_offsets(student, offsets, deadline, error):
    with pytest.raises(ValidationError, match=error):
        send(student, reminder_offsets=offsets,
             deadline=timezone.now() + dt.timedelta(days=1) if deadline else None)
    assert not Notification.objects.exists()
