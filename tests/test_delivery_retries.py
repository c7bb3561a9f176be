"""Transient failures are retried with backoff, permanent ones are not; nothing is sent early."""

from datetime import timedelta

import pytest
from django.utils import timezone

from notifications.models import CategoryDefault, Delivery, Notification
from notifications.engine import deliveries_send, deliveries_sweep
from notifications.services import notification_send

from .delivery_helpers import closed_breakers, fan_out_and_send, send_again, students  # noqa: F401

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("closed_breakers")]


def email_to(admin_user, users, **fields):
    notification, _ = notification_send(sender=admin_user, notifier="academic", category="announcement",
                                        title="Exam timetable", body="Published today.", channels=["email"],
                                        audience={"users": [u.username for u in users]}, **fields)
    return notification


def test_it_retries_a_temporary_smtp_failure_then_sends(smtp_peer, admin_user, settings):
    settings.DELIVERY_RETRY_BASE_SECONDS = 30
    (student,) = students("s3000", 1)
    smtp_peer.fail_next = 1  # 451 4.3.0 try again later
    now = timezone.now()

    notification = email_to(admin_user, [student])
    fan_out_and_send(notification, now=now)

    delivery = Delivery.objects.get(notification=notification)
    assert (delivery.status, delivery.attempts) == ("retrying", 1), delivery.last_error
    assert "451" in delivery.last_error
    assert now + timedelta(seconds=15) <= delivery.next_attempt_at <= now + timedelta(seconds=30)
    assert send_again(notification, now=now + timedelta(seconds=14)) == {}  # not due yet
    assert smtp_peer.messages == []

    send_again(notification, now=delivery.next_attempt_at)

    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.send_count, delivery.last_error) == ("sent", 2, 1, "")
    assert [m["To"] for m in smtp_peer.messages] == [student.email]
    assert Notification.objects.get(pk=notification.pk).status == "sent"


def test_it_does_not_retry_a_permanent_failure(smtp_peer, admin_user):
    refused, accepted = students("s3100", 2)
    smtp_peer.refuse.add(refused.email)  # 550 5.1.1 mailbox unavailable
    now = timezone.now()

    notification = email_to(admin_user, [refused, accepted])
    fan_out_and_send(notification, now=now)

    failed = Delivery.objects.get(notification=notification, recipient=refused)
    assert (failed.status, failed.attempts) == ("failed", 1)
    assert "550" in failed.last_error
    assert deliveries_sweep(now=now + timedelta(days=2)).get("enqueued") is None
    assert send_again(notification, now=now + timedelta(days=2)) == {}
    assert Delivery.objects.get(pk=failed.pk).attempts == 1
    assert [m["To"] for m in smtp_peer.messages] == [accepted.email]
    assert Notification.objects.get(pk=notification.pk).status == "partially_failed"


def test_it_backs_off_exponentially_with_jitter_then_gives_up(smtp_peer, admin_user, settings):
    settings.DELIVERY_MAX_ATTEMPTS = 4
    settings.DELIVERY_RETRY_BASE_SECONDS = 10
    settings.DELIVERY_RETRY_MAX_SECONDS = 35
    settings.BREAKER_FAILURE_THRESHOLD = 100  # this test is about backoff, not the breaker
    users = students("s3200", 8)
    smtp_peer.fail_next = 1000
    now = timezone.now()
    notification = email_to(admin_user, users)
    fan_out_and_send(notification, now=now)

    for attempt, ceiling in ((1, 10), (2, 20), (3, 35)):
        deliveries = list(Delivery.objects.filter(notification=notification))
        delays = [(d.next_attempt_at - now).total_seconds() for d in deliveries]
        assert {d.status for d in deliveries} == {"retrying"} and {d.attempts for d in deliveries} == {attempt}
        assert all(ceiling / 2 <= delay <= ceiling for delay in delays), (attempt, delays)
        assert len(set(delays)) > 1  # jitter spreads the retries
        now = max(d.next_attempt_at for d in deliveries)
        send_again(notification, now=now)

    deliveries = Delivery.objects.filter(notification=notification)
    assert {(d.status, d.attempts) for d in deliveries} == {("failed", 4)}
    assert all("gave up after 4 attempts" in d.last_error for d in deliveries)
    assert len(smtp_peer.messages) == 0
    assert send_again(notification, now=now + timedelta(days=1)) == {}


def test_it_honours_retry_after_when_twilio_answers_429(http_peer, admin_user, settings):
    twilio = http_peer(lambda request: (429, {"Retry-After": "120"},
                                        {"code": 20429, "message": "Too Many Requests", "status": 429}))
    settings.TWILIO_ACCOUNT_SID, settings.TWILIO_AUTH_TOKEN = "AC" + "1" * 32, "token"
    settings.TWILIO_MESSAGING_SERVICE_SID, settings.TWILIO_API_BASE = "MG" + "2" * 32, twilio.url
    CategoryDefault.objects.create(category="announcement", channel="sms", enabled=True)
    (student,) = students("s3300", 1, phone="+447911123456", phone_verified_at=timezone.now())
    now = timezone.now()

    notification, _ = notification_send(sender=admin_user, notifier="academic", category="announcement",
                                        title="Room change", body="B12.", channels=["sms"],
                                        audience={"users": [student.username]})
    fan_out_and_send(notification, now=now)

    delivery = Delivery.objects.get(notification=notification)
    assert (delivery.status, delivery.attempts) == ("retrying", 1)
    assert delivery.next_attempt_at == now + timedelta(seconds=120)
    assert "429" in delivery.last_error
    assert len(twilio.requests) == 1


def test_it_honours_retry_after_when_the_esp_answers_429(http_peer, admin_user, settings):
    esp = http_peer(lambda request: (429, {"Retry-After": "45"}, {"ErrorCode": 429, "Message": "Rate limit"}))
    settings.EMAIL_BACKEND = "anymail.backends.postmark.EmailBackend"
    settings.ANYMAIL = {"POSTMARK_SERVER_TOKEN": "server-token", "POSTMARK_API_URL": esp.url + "/"}
    (student,) = students("s3400", 1)
    now = timezone.now()

    notification = email_to(admin_user, [student])
    fan_out_and_send(notification, now=now)

    delivery = Delivery.objects.get(notification=notification)
    assert (delivery.status, delivery.next_attempt_at) == ("retrying", now + timedelta(seconds=45))


def test_it_sends_nothing_for_a_cancelled_notification(smtp_peer, admin_user):
    from notifications.engine import notification_fan_out
    from notifications.services import notification_cancel

    users = students("s3500", 3)
    notification = email_to(admin_user, users)
    notification_fan_out(notification.pk)
    notification_cancel(notification)

    assert deliveries_send(list(Delivery.objects.values_list("id", flat=True))) == {}
    assert set(Delivery.objects.values_list("status", flat=True)) == {"cancelled"}
    assert smtp_peer.messages == []
